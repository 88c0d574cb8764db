package client

import (
	"context"
	"errors"
	"net/http"
	"slices"
	"testing"
)

func TestZoneCalls(t *testing.T) {
	srv, seen := fakeAPI(t, map[string]func(http.ResponseWriter){
		"GET /v1/zones": answer(200, "20", `{"items":[{"zone":"a","evacuated":false,"modify_index":0,"nodes":["n1"],"backends":2},`+
			`{"zone":"b","evacuated":true,"modify_index":19,"nodes":["n2"],"backends":2}],"index":20}`),
		"POST /v1/zones/b/evacuate":           answer(200, "21", `{"index":21,"zone":"b","evacuated":true}`),
		"POST /v1/zones/a/evacuate":           answer(200, "22", `{"index":22,"zone":"a","evacuated":true,"warning":"pools stranded","stranded_pools":["app"]}`),
		"DELETE /v1/zones/b/evacuate":         answer(200, "23", `{"index":23,"zone":"b","evacuated":false}`),
		"POST /v1/zones/us%20east/evacuate":   answer(400, "23", `{"error":{"code":"invalid","message":"bad name","field":"zone"}}`),
		"DELETE /v1/zones/us%20east/evacuate": answer(400, "23", `{"error":{"code":"invalid","message":"bad name","field":"zone"}}`),
	})
	c := New(srv.URL, "tok", nil)
	ctx := context.Background()

	zones, m, err := c.Zones(ctx)
	if err != nil || m.Index != 20 || len(zones) != 2 || zones[1].Zone != "b" || !zones[1].Evacuated ||
		zones[1].ModifyIndex != 19 || !slices.Equal(zones[0].Nodes, []string{"n1"}) || zones[0].Backends != 2 {
		t.Fatalf("Zones = %+v %+v %v", zones, m, err)
	}
	res, err := c.EvacuateZone(ctx, "b")
	if err != nil || res.Index != 21 || !res.Evacuated || res.Warning != "" {
		t.Fatalf("EvacuateZone(b) = %+v %v", res, err)
	}
	res, err = c.EvacuateZone(ctx, "a")
	if err != nil || res.Warning == "" || !slices.Equal(res.StrandedPools, []string{"app"}) {
		t.Fatalf("EvacuateZone(a) = %+v %v", res, err)
	}
	res, err = c.RestoreZone(ctx, "b")
	if err != nil || res.Index != 23 || res.Evacuated {
		t.Fatalf("RestoreZone(b) = %+v %v", res, err)
	}
	for _, f := range []func(context.Context, string) (ZoneResult, error){c.EvacuateZone, c.RestoreZone} {
		_, err = f(ctx, "us east")
		var ae *APIError
		if !IsStatus(err, 400) || !errors.As(err, &ae) || ae.Field != "zone" {
			t.Fatalf("bad zone name: %v", err)
		}
	}
	want := []recorded{
		{Method: "GET", Path: "/v1/zones"},
		{Method: "POST", Path: "/v1/zones/b/evacuate"},
		{Method: "POST", Path: "/v1/zones/a/evacuate"},
		{Method: "DELETE", Path: "/v1/zones/b/evacuate"},
		{Method: "POST", Path: "/v1/zones/us%20east/evacuate"},
		{Method: "DELETE", Path: "/v1/zones/us%20east/evacuate"},
	}
	if len(*seen) != len(want) {
		t.Fatalf("server saw %+v", *seen)
	}
	for i, r := range *seen {
		if r.Method != want[i].Method || r.Path != want[i].Path || r.Auth != "Bearer tok" || r.Body != "" {
			t.Fatalf("request %d = %+v, want %s %s with the token and no body", i, r, want[i].Method, want[i].Path)
		}
	}
}
