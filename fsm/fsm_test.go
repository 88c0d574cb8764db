package fsm

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"
)

func TestFSMApply(t *testing.T) {
	f := New()
	if c := f.Config(); c.Index != 0 || c.Listeners == nil || c.Nodes == nil {
		t.Fatalf("New: %+v", c)
	}
	ch := f.Changed()
	b, _ := EncodeCommand(PutCommand(obj(KindListener, "web", `{"port":80}`), nil))
	if err := f.Apply(5, b); err != nil {
		t.Fatal(err)
	}
	select {
	case <-ch:
	default:
		t.Fatal("Changed not closed by Apply")
	}
	if l := f.Config().Listeners["web"]; l == nil || l.ModifyIndex != 5 || f.Config().Index != 5 {
		t.Fatalf("after apply: %+v", f.Config())
	}
	// A refused entry leaves the document but advances the index.
	before := f.Config()
	ch = f.Changed()
	b, _ = EncodeCommand(PutCommand(obj(KindListener, "web", `{"port":0}`), nil))
	if err := f.Apply(6, b); !errors.Is(err, ErrInvalid) {
		t.Fatalf("Apply of an invalid put: %v", err)
	}
	after := f.Config()
	if after.Index != 6 || after.Listeners["web"].Spec.Port != 80 || before.Index != 5 {
		t.Fatalf("after refused entry: index %d port %d (old index %d)", after.Index, after.Listeners["web"].Spec.Port, before.Index)
	}
	select {
	case <-ch:
	default:
		t.Fatal("Changed not closed by a refused entry")
	}
	if err := f.Apply(7, []byte("{garbage")); !errors.Is(err, ErrInvalid) || f.Config().Index != 7 {
		t.Fatalf("garbage entry: %v, index %d", err, f.Config().Index)
	}
	ch = f.Changed()
	f.Restore(nil)
	<-ch
	if c := f.Config(); c.Index != 0 || len(c.Listeners) != 0 {
		t.Fatal("Restore(nil) did not empty the document")
	}
	partial := &Config{Index: 9}
	f.Restore(partial)
	if c := f.Config(); c.Index != 9 || c.Routes == nil || partial.Routes != nil {
		t.Fatal("Restore must fill maps without modifying its argument")
	}
}

// TestFSMConcurrentReaders runs readers against a writer; with -race it
// shows that Config and Changed need no locking by callers.
func TestFSMConcurrentReaders(t *testing.T) {
	f := New()
	const writes = 200
	done := make(chan struct{})
	var wg sync.WaitGroup
	errs := make(chan error, 4)
	for r := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var last uint64
			for {
				ch := f.Changed()
				c := f.Config()
				if c.Index < last {
					errs <- fmt.Errorf("reader %d: index went back from %d to %d", r, last, c.Index)
					return
				}
				last = c.Index
				for _, o := range c.List(KindPool) {
					_ = o.Spec
				}
				if c.Index == writes {
					return
				}
				select {
				case <-ch:
				case <-done:
					return
				}
			}
		}()
	}
	for i := 1; i <= writes; i++ {
		b, _ := EncodeCommand(PutCommand(obj(KindPool, fmt.Sprintf("p%d", i%10), fmt.Sprintf(`{"panic_threshold":%d}`, i%100)), nil))
		if err := f.Apply(uint64(i), b); err != nil {
			t.Fatal(err)
		}
	}
	waited := make(chan struct{})
	go func() { wg.Wait(); close(waited) }()
	select {
	case <-waited:
	case <-time.After(30 * time.Second):
		close(done)
		<-waited
		t.Fatal("readers did not see the last index")
	}
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

func TestWaitIndex(t *testing.T) {
	f := New()
	done := make(chan *Config, 1)
	go func() {
		c, err := WaitIndex(context.Background(), f, 2)
		if err != nil {
			t.Errorf("WaitIndex: %v", err)
		}
		done <- c
	}()
	for i := uint64(1); i <= 2; i++ {
		b, _ := EncodeCommand(PutCommand(obj(KindListener, "web", fmt.Sprintf(`{"port":%d}`, 8000+i)), nil))
		if err := f.Apply(i, b); err != nil {
			t.Fatal(err)
		}
	}
	select {
	case c := <-done:
		if c.Index != 2 {
			t.Fatalf("WaitIndex returned index %d, want 2", c.Index)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("WaitIndex did not return after index 2 was applied")
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if c, err := WaitIndex(ctx, f, 9); !errors.Is(err, context.Canceled) || c.Index != 2 {
		t.Fatalf("WaitIndex after cancel = %v, %v; want the current config and context.Canceled", c, err)
	}
}

// An entry checked and expected on the leader (Check, Expect) is applied
// by publishing the document Check built, which is the document Apply
// would have built; an expectation for another index, other bytes or
// another document is never used, and one on a document no longer
// current is forgotten.
func TestFSMAppliesExpectedOutcome(t *testing.T) {
	f := New()
	put := func(port int) []byte {
		b, err := EncodeCommand(PutCommand(obj(KindListener, "web", fmt.Sprintf(`{"port":%d}`, port)), nil))
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	cur := f.Config()
	data := put(80)
	next, err := f.Check(cur, 1, data)
	if err != nil {
		t.Fatal(err)
	}
	fresh, err := Next(cur, 1, PutCommand(obj(KindListener, "web", `{"port":80}`), nil))
	if err != nil {
		t.Fatal(err)
	}
	var a, b bytes.Buffer
	if err := WriteSnapshot(&a, next); err != nil {
		t.Fatal(err)
	}
	if err := WriteSnapshot(&b, fresh); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(a.Bytes(), b.Bytes()) {
		t.Fatalf("Check built\n%s\nNext built\n%s", a.Bytes(), b.Bytes())
	}
	// Expectations that must not be used: a sentinel document each.
	bogus := func() *Config { c := *cur; c.Index = 999; return &c }
	wrongIndex, wrongData, wrongBase := bogus(), bogus(), bogus()
	f.Expect(cur, 2, data, wrongIndex)
	f.Expect(cur, 1, put(81), wrongData)
	f.Expect(next, 1, data, wrongBase)
	f.Expect(cur, 1, data, next)
	if err := f.Apply(1, data); err != nil {
		t.Fatal(err)
	}
	if f.Config() != next {
		t.Fatal("the expected outcome was computed again, not published")
	}
	// Index 2 on the old document: never used now, and dropped.
	if err := f.Apply(2, put(82)); err != nil {
		t.Fatal(err)
	}
	if got := f.Config(); got == wrongIndex || got == wrongData || got == wrongBase || got.Listeners["web"].Spec.Port != 82 {
		t.Fatalf("after a second entry: port %d, index %d", got.Listeners["web"].Spec.Port, got.Index)
	}
	f.expMu.Lock()
	left := len(f.exp)
	f.expMu.Unlock()
	if left != 0 {
		t.Fatalf("%d expectations kept on documents no longer current", left)
	}
	// At most maxExpected are kept.
	cur = f.Config()
	for i := range maxExpected + 3 {
		f.Expect(cur, cur.Index+1, put(100+i), cur)
	}
	f.expMu.Lock()
	left = len(f.exp)
	f.expMu.Unlock()
	if left != maxExpected {
		t.Fatalf("%d expectations kept, want at most %d", left, maxExpected)
	}
}

// Check refuses what Apply would refuse, with the same error.
func TestFSMCheckRefusesAsApplyDoes(t *testing.T) {
	f := New()
	b, _ := EncodeCommand(PutCommand(obj(KindListener, "web", `{"port":0}`), nil))
	_, checkErr := f.Check(f.Config(), 1, b)
	applyErr := f.Apply(1, b)
	if !errors.Is(checkErr, ErrInvalid) || checkErr.Error() != applyErr.Error() {
		t.Fatalf("Check: %v; Apply: %v", checkErr, applyErr)
	}
	if _, err := f.Check(f.Config(), 2, []byte("not an entry")); err == nil {
		t.Fatal("Check accepted bytes that are not an entry")
	}
}
