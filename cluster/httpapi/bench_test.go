package httpapi

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/rafterlb/rafter/fsm"
)

func BenchmarkAuthCheck(b *testing.B) {
	rw := make([]string, 8)
	for i := range rw {
		rw[i] = fmt.Sprintf("token-%d", i)
	}
	a := newAuthenticator(rw, []string{"read-only"})
	for b.Loop() {
		a.check("read-only")
	}
}

func BenchmarkListRoutes(b *testing.B) {
	st := newFakeStore("n1")
	cfg := DefaultConfig()
	cfg.Store = st
	cfg.ReadWriteTokens = []string{rwToken}
	api, err := New(cfg)
	if err != nil {
		b.Fatal(err)
	}
	objs := []fsm.Object{
		{Kind: fsm.KindListener, Name: "web", Spec: []byte(validSpecs[fsm.KindListener])},
		{Kind: fsm.KindPool, Name: "app", Spec: []byte(validSpecs[fsm.KindPool])},
	}
	for i := range 100 {
		objs = append(objs, fsm.Object{Kind: fsm.KindRoute, Name: fmt.Sprintf("r%03d", i), Spec: []byte(validSpecs[fsm.KindRoute])})
	}
	if _, err := st.Apply(b.Context(), fsm.ApplyCommand(objs)); err != nil {
		b.Fatal(err)
	}
	req := httptest.NewRequest("GET", "/v1/routes", nil)
	req.Header.Set("Authorization", "Bearer "+rwToken)
	for b.Loop() {
		w := httptest.NewRecorder()
		api.ServeHTTP(w, req)
		if w.Code != http.StatusOK {
			b.Fatalf("status %d: %s", w.Code, w.Body)
		}
	}
}
