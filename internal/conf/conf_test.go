package conf

import (
	"log/slog"
	"testing"
	"time"
)

func TestDefault(t *testing.T) {
	d := time.Duration(0)
	Default(&d, time.Second)
	if d != time.Second {
		t.Fatalf("zero: got %s, want 1s", d)
	}
	Default(&d, time.Minute)
	if d != time.Second {
		t.Fatalf("set: got %s, want it kept at 1s", d)
	}
	s := ""
	Default(&s, "http")
	if s != "http" {
		t.Fatalf("string: got %q", s)
	}
}

func TestLoggerAndNow(t *testing.T) {
	var l *slog.Logger
	Logger(&l)
	if l == nil {
		t.Fatal("Logger left nil")
	}
	mine := slog.Default()
	Logger(&mine)
	if mine != slog.Default() {
		t.Fatal("Logger replaced a set logger")
	}
	var now func() time.Time
	Now(&now)
	if now == nil {
		t.Fatal("Now left nil")
	}
	fixed := time.Unix(1, 0)
	fake := func() time.Time { return fixed }
	Now(&fake)
	if !fake().Equal(fixed) {
		t.Fatal("Now replaced a set clock")
	}
}

func TestPositive(t *testing.T) {
	for _, tc := range []struct{ v, want time.Duration }{
		{0, time.Second}, {-time.Minute, time.Second}, {time.Millisecond, time.Millisecond},
	} {
		v := tc.v
		Positive(&v, time.Second)
		if v != tc.want {
			t.Errorf("Positive(%s): got %s, want %s", tc.v, v, tc.want)
		}
	}
}

func TestNotNegative(t *testing.T) {
	for _, tc := range []struct {
		name   string
		fields []Value
		want   string
	}{
		{"none", nil, ""},
		{"all fine", []Value{Field("a.tick", time.Second), Field("a.count", 0)}, ""},
		{"first negative wins", []Value{
			Field("a.tick", time.Second), Field("a.count", -1), Field("a.wait", -time.Second),
		}, "a.count: must not be negative"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := NotNegative(tc.fields...)
			got := ""
			if err != nil {
				got = err.Error()
			}
			if got != tc.want {
				t.Fatalf("got %q, want %q", got, tc.want)
			}
		})
	}
}
