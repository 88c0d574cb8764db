package dataplane

import (
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"
)

// A request without a body that follows one with a body, on another
// connection, must reach the backend without a body: the pooled exchange
// must not carry the first request's body over.
func TestNoBodyCarriedToNextRequest(t *testing.T) {
	f := newProxyFixture(t, nil, nil)
	const body = "client A's private body 12345"
	for i := 0; i < 20; i++ {
		post := fmt.Sprintf("POST /a HTTP/1.1\r\nHost: app\r\nContent-Length: %d\r\n\r\n%s", len(body), body)
		if resp, _ := rawExchange(t, f.addr, post); resp.StatusCode != 200 {
			t.Fatalf("POST: status %d", resp.StatusCode)
		}
		for _, req := range []string{
			"GET /b HTTP/1.1\r\nHost: app\r\n\r\n",
			"POST /b HTTP/1.1\r\nHost: app\r\nContent-Length: 0\r\n\r\n",
			"GET /b HTTP/1.0\r\nHost: app\r\n\r\n",
		} {
			if resp, _ := rawExchange(t, f.addr, req); resp.StatusCode != 200 {
				t.Fatalf("%s: status %d", firstLine(req), resp.StatusCode)
			}
		}
	}
	for _, s := range f.be.requests() {
		cl := s.Header.Get("Content-Length")
		if strings.HasPrefix(s.URI, "/b") && (s.Body != "" || (cl != "" && cl != "0")) {
			t.Fatalf("%s %s reached the backend with Content-Length %q and body %q",
				s.Method, s.URI, s.Header.Get("Content-Length"), s.Body)
		}
	}
}

// Every field of an exchange is zero or an empty buffer after reset, so a
// field added later cannot carry one request's data into the next.
func TestExchangeResetClearsEverything(t *testing.T) {
	ex := newExchange()
	v := reflect.ValueOf(ex).Elem()
	fill(t, v, "exchange")
	ex.reset()
	checkCleared(t, v, "exchange")
}

// nopLeaseOwner fills an upstreamLease's owner.
type nopLeaseOwner struct{}

func (nopLeaseOwner) endLease(*upstreamLease, bool) {}

// fill sets every field of v to a value that is not zero.
func fill(t *testing.T, v reflect.Value, path string) {
	t.Helper()
	switch v.Kind() {
	case reflect.Struct:
		for i := 0; i < v.NumField(); i++ {
			f := v.Field(i)
			f = reflect.NewAt(f.Type(), f.Addr().UnsafePointer()).Elem()
			fill(t, f, path+"."+v.Type().Field(i).Name)
		}
	case reflect.Slice:
		s := reflect.MakeSlice(v.Type(), 3, 3)
		for i := 0; i < 3; i++ {
			fill(t, s.Index(i), path+"[]")
		}
		v.Set(s)
	case reflect.Array:
		for i := 0; i < v.Len(); i++ {
			fill(t, v.Index(i), fmt.Sprintf("%s[%d]", path, i))
		}
	case reflect.Pointer:
		p := reflect.New(v.Type().Elem())
		v.Set(p)
	case reflect.Interface:
		for _, c := range []any{errors.New("x"), strings.NewReader("x"), nopLeaseOwner{}} {
			if cv := reflect.ValueOf(c); cv.Type().Implements(v.Type()) {
				v.Set(cv)
				return
			}
		}
		t.Fatalf("%s: cannot fill a %s", path, v.Type())
	case reflect.String:
		v.SetString("x")
	case reflect.Bool:
		v.SetBool(true)
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		v.SetInt(7)
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		v.SetUint(7)
	default:
		t.Fatalf("%s: cannot fill a %s", path, v.Kind())
	}
}

// checkCleared reports fields of v that are neither zero nor empty slices.
func checkCleared(t *testing.T, v reflect.Value, path string) {
	t.Helper()
	switch v.Kind() {
	case reflect.Struct:
		if v.Type() == reflect.TypeOf(time.Time{}) {
			if !v.IsZero() {
				t.Errorf("%s not cleared", path)
			}
			return
		}
		for i := 0; i < v.NumField(); i++ {
			checkCleared(t, v.Field(i), path+"."+v.Type().Field(i).Name)
		}
	case reflect.Slice:
		if v.Len() != 0 {
			t.Errorf("%s keeps %d elements", path, v.Len())
		}
		// Elements past the length must not pin the previous request's
		// memory either (tokens alias its header).
		if v.Type().Elem().Kind() == reflect.Slice {
			full := v.Slice(0, v.Cap())
			for i := 0; i < full.Len(); i++ {
				if !full.Index(i).IsZero() {
					t.Errorf("%s[%d] past the length still set", path, i)
				}
			}
		}
	default:
		if !v.IsZero() {
			t.Errorf("%s not cleared: %v", path, v)
		}
	}
}
