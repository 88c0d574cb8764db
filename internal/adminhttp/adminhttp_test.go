package adminhttp

import (
	"net/http"
	"net/http/httptest"
	"testing"
)

func TestDo(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Auth", r.Header.Get("Authorization"))
		w.WriteHeader(http.StatusTeapot)
		_, _ = w.Write([]byte("0123456789"))
	}))
	t.Cleanup(srv.Close)
	for _, tc := range []struct {
		name, token, wantAuth string
		limit                 int64
		wantBody              string
	}{
		{"token and whole body", "s3cret", "Bearer s3cret", 64, "0123456789"},
		{"no token, cut body", "", "", 4, "0123"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req, err := http.NewRequest(http.MethodGet, srv.URL, nil)
			if err != nil {
				t.Fatal(err)
			}
			resp, body, err := Do(nil, req, tc.token, tc.limit)
			if err != nil {
				t.Fatal(err)
			}
			if resp.StatusCode != http.StatusTeapot || resp.Header.Get("X-Auth") != tc.wantAuth || string(body) != tc.wantBody {
				t.Fatalf("got %d %q %q, want 418 %q %q", resp.StatusCode, resp.Header.Get("X-Auth"), body, tc.wantAuth, tc.wantBody)
			}
		})
	}
}
