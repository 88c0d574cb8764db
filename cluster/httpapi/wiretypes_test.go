package httpapi

import (
	"bytes"
	"encoding/json"
	"reflect"
	"testing"
	"time"

	"github.com/rafterlb/rafter/api"
	"github.com/rafterlb/rafter/dataplane/health"
)

// The cluster-wide health view decodes every node's GET /v1/health into
// api.TargetHealth: a field the health monitor reports that the wire type
// lacks would vanish from /v1/health/cluster without a word.
func TestTargetHealthCarriesEveryField(t *testing.T) {
	var st health.TargetStatus
	v := reflect.ValueOf(&st).Elem()
	for i := range v.NumField() {
		f := v.Field(i)
		switch f.Kind() {
		case reflect.String:
			f.SetString("x")
		case reflect.Bool:
			f.SetBool(true)
		case reflect.Int, reflect.Int64:
			f.SetInt(1)
		case reflect.Uint64:
			f.SetUint(1)
		case reflect.Struct:
			if f.Type() != reflect.TypeOf(time.Time{}) {
				t.Fatalf("field %s: a struct the test does not fill", v.Type().Field(i).Name)
			}
			f.Set(reflect.ValueOf(time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)))
		default:
			t.Fatalf("field %s: kind %s the test does not fill", v.Type().Field(i).Name, f.Kind())
		}
	}
	b, err := json.Marshal(st)
	if err != nil {
		t.Fatal(err)
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	var th api.TargetHealth
	if err := dec.Decode(&th); err != nil {
		t.Fatalf("api.TargetHealth misses a field of health.TargetStatus: %v", err)
	}
	back, _ := json.Marshal(th)
	if !bytes.Equal(back, b) {
		t.Errorf("round trip through api.TargetHealth changed the answer:\n%s\n%s", b, back)
	}
}
