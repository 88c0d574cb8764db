package fsm

import (
	"slices"
	"testing"
)

const rolloutSpec = `{"route":"app","stable":"app","canary":"other","steps":[10,50,100],"interval":"2s","min_requests":5}`

func rolloutBase(t *testing.T) *Config {
	t.Helper()
	return mustNext(t, baseConfig(t), PutCommand(obj(KindRollout, "r1", rolloutSpec), nil))
}

func wantSplit(t *testing.T, c *Config, stable, canary int) {
	t.Helper()
	want := []WeightedPool{{Pool: "app", Weight: stable}, {Pool: "other", Weight: canary}}
	if got := c.Routes["app"].Spec.Action.Split; !slices.Equal(got, want) {
		t.Fatalf("split = %v, want %v", got, want)
	}
}

func TestRolloutCreateStartsAtFirstStep(t *testing.T) {
	c := rolloutBase(t)
	st := c.RolloutStatus["r1"]
	if st == nil || st.State != RolloutProgressing || st.Step != 0 || st.Weight != 10 || st.Token != c.Index {
		t.Fatalf("status = %+v", st)
	}
	wantSplit(t, c, 90, 10)
	if c.Routes["app"].ModifyIndex != c.Index {
		t.Fatalf("route modify_index %d, want %d", c.Routes["app"].ModifyIndex, c.Index)
	}
	// The same spec again changes nothing; the route's old split applied
	// again is put back to the running step's.
	again := mustNext(t, c, PutCommand(obj(KindRollout, "r1", rolloutSpec), nil))
	if again.RolloutStatus["r1"] != st {
		t.Fatal("an unchanged rollout was restarted")
	}
	reset := mustNext(t, c, PutCommand(obj(KindRoute, "app", `{"listener":"web","action":{"split":[{"pool":"app","weight":1}]}}`), nil))
	wantSplit(t, reset, 90, 10)
}

func TestRolloutDecisions(t *testing.T) {
	c := rolloutBase(t)
	decide := func(c *Config, verdict string, term uint64) *Config {
		st := c.RolloutStatus["r1"]
		return mustNext(t, c, NewCommand(&RolloutDecide{Name: "r1", Token: st.Token, Term: term, Verdict: verdict,
			Figures: &RolloutFigures{Requests: 7}, Time: fixedTime}))
	}
	c1 := decide(c, VerdictAdvance, 2)
	wantSplit(t, c1, 50, 50)
	// A decision made on the older status (a deposed leader, or the same
	// decision twice) is refused: no step is skipped or repeated.
	_, err := Next(c1, c1.Index+1, NewCommand(&RolloutDecide{Name: "r1", Token: c.RolloutStatus["r1"].Token, Term: 3, Verdict: VerdictAdvance}))
	wantFieldError(t, err, "token", ErrConflict)
	_, err = Next(c1, c1.Index+1, NewCommand(&RolloutDecide{Name: "r1", Token: c1.RolloutStatus["r1"].Token, Term: 1, Verdict: VerdictAdvance}))
	wantFieldError(t, err, "term", ErrConflict)
	_, err = Next(c1, c1.Index+1, NewCommand(&RolloutDecide{Name: "r1", Token: c1.RolloutStatus["r1"].Token, Term: 2, Verdict: "maybe"}))
	wantFieldError(t, err, "verdict", ErrInvalid)

	c2 := decide(c1, VerdictAdvance, 3)
	wantSplit(t, c2, 0, 100)
	c3 := decide(c2, VerdictAdvance, 3)
	st := c3.RolloutStatus["r1"]
	if st.State != RolloutSucceeded || st.Weight != 100 || len(st.History) != 3 {
		t.Fatalf("status = %+v", st)
	}
	for i, h := range st.History {
		if h.Step != i || h.Result != "passed" || h.Figures.Requests != 7 {
			t.Fatalf("history[%d] = %+v", i, h)
		}
	}
	wantSplit(t, c3, 0, 100)
	_, err = Next(c3, c3.Index+1, NewCommand(&RolloutDecide{Name: "r1", Token: st.Token, Term: 3, Verdict: VerdictAdvance}))
	wantFieldError(t, err, "name", ErrConflict)

	failed := decide(c1, VerdictFail, 2)
	if st := failed.RolloutStatus["r1"]; st.State != RolloutFailed || st.Weight != 0 || st.History[1].Result != "failed" {
		t.Fatalf("status = %+v", st)
	}
	wantSplit(t, failed, 100, 0)
}

func TestRolloutControl(t *testing.T) {
	c := rolloutBase(t)
	ctl := func(c *Config, action string) (*Config, error) {
		return Next(c, c.Index+1, NewCommand(&RolloutControl{Name: "r1", Action: action, Time: fixedTime}))
	}
	paused, err := ctl(c, RolloutPause)
	if err != nil || paused.RolloutStatus["r1"].State != RolloutPaused {
		t.Fatalf("pause: %v", err)
	}
	_, err = Next(paused, paused.Index+1, NewCommand(&RolloutDecide{Name: "r1", Token: paused.RolloutStatus["r1"].Token, Verdict: VerdictAdvance}))
	wantFieldError(t, err, "name", ErrConflict)
	resumed, err := ctl(paused, RolloutResume)
	if err != nil || resumed.RolloutStatus["r1"].State != RolloutProgressing || resumed.RolloutStatus["r1"].Token != resumed.Index {
		t.Fatalf("resume: %v %+v", err, resumed.RolloutStatus["r1"])
	}
	promoted, err := ctl(resumed, RolloutPromote)
	if err != nil || promoted.RolloutStatus["r1"].State != RolloutSucceeded {
		t.Fatalf("promote: %v", err)
	}
	wantSplit(t, promoted, 0, 100)
	_, err = ctl(promoted, RolloutAbort)
	wantFieldError(t, err, "action", ErrConflict)
	aborted, err := ctl(c, RolloutAbort)
	if err != nil || aborted.RolloutStatus["r1"].State != RolloutAborted {
		t.Fatalf("abort: %v", err)
	}
	wantSplit(t, aborted, 100, 0)
	_, err = ctl(c, "restart")
	wantFieldError(t, err, "action", ErrInvalid)
}

func TestRolloutValidation(t *testing.T) {
	base := baseConfig(t)
	tests := []struct{ spec, field string }{
		{`{"route":"app","stable":"app","canary":"app","steps":[100],"interval":"1s"}`, "spec.canary"},
		{`{"route":"app","stable":"app","canary":"other","steps":[50,50,100],"interval":"1s"}`, "spec.steps[1]"},
		{`{"route":"app","stable":"app","canary":"other","steps":[10,50],"interval":"1s"}`, "spec.steps[1]"},
		{`{"route":"app","stable":"app","canary":"other","steps":[],"interval":"1s"}`, "spec.steps"},
		{`{"route":"app","stable":"app","canary":"other","steps":[100]}`, "spec.interval"},
		{`{"route":"app","stable":"app","canary":"other","steps":[100],"interval":"1s","max_p99":"1s","max_p99_ratio":2}`, "spec.max_p99_ratio"},
		{`{"route":"app","stable":"app","canary":"other","steps":[100],"interval":"1s","sticky":{}}`, "spec.sticky"},
		{`{"route":"nope","stable":"app","canary":"other","steps":[100],"interval":"1s"}`, "spec.route"},
		{`{"route":"app","stable":"app","canary":"nope","steps":[100],"interval":"1s"}`, "spec.canary"},
		{`{"route":"app","stable":"other","canary":"x","steps":[100],"interval":"1s"}`, "spec.canary"},
	}
	for _, tt := range tests {
		_, err := Next(base, base.Index+1, PutCommand(obj(KindRollout, "r", tt.spec), nil))
		wantFieldError(t, err, tt.field, ErrInvalid)
	}
	c := rolloutBase(t)
	_, err := Next(c, c.Index+1, DeleteCommand(KindRoute, "app", nil))
	wantFieldError(t, err, "name", ErrConflict)
	gone := mustNext(t, c, DeleteCommand(KindRollout, "r1", nil))
	if _, ok := gone.RolloutStatus["r1"]; ok {
		t.Fatal("status outlived its rollout")
	}
}

func TestRolloutSnapshotRoundTrip(t *testing.T) {
	c := rolloutBase(t)
	b := snapshotBytes(t, c)
	restored, err := ReadSnapshot(bytesReader(b))
	if err != nil {
		t.Fatal(err)
	}
	if restored.RolloutStatus["r1"].Weight != 10 || restored.Rollouts["r1"].Spec.Steps[1] != 50 {
		t.Fatalf("restored %+v", restored.RolloutStatus["r1"])
	}
	again := mustNext(t, baseConfig(t), NewCommand(&Restore{Config: restored}))
	if st := again.RolloutStatus["r1"]; st.State != RolloutProgressing || st.Weight != 10 {
		t.Fatalf("after restore: %+v", st)
	}
	wantSplit(t, again, 90, 10)
}
