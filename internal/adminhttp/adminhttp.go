package adminhttp

import (
	"io"
	"net/http"
)

// Do sends req through c (http.DefaultClient when nil), with token as a
// bearer token unless it is empty, and reads at most limit bytes of the
// answer. The returned response's body is closed; its status and headers
// stay readable.
func Do(c *http.Client, req *http.Request, token string, limit int64) (*http.Response, []byte, error) {
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	if c == nil {
		c = http.DefaultClient
	}
	resp, err := c.Do(req)
	if err != nil {
		return nil, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, limit))
	if err != nil {
		return nil, nil, err
	}
	return resp, b, nil
}
