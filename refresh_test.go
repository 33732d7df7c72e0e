package aisquare

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func TestRefreshGroupSharesOneCall(t *testing.T) {
	t.Parallel()

	g := newRefreshGroup(time.Now)
	release := make(chan struct{})

	var calls atomic.Int32

	var wg sync.WaitGroup

	results := make([]*tokenPair, 20)

	for i := range results {
		wg.Add(1)

		go func() {
			defer wg.Done()

			pair, err := g.do(context.Background(), "state-1", func() (*tokenPair, error) {
				calls.Add(1)
				<-release

				return &tokenPair{Access: "a2", Refresh: "r2"}, nil
			})
			if err != nil {
				t.Errorf("do() error = %v", err)
			}

			results[i] = pair
		}()
	}

	// Let every goroutine reach the group before the refresh finishes.
	time.Sleep(50 * time.Millisecond)
	close(release)
	wg.Wait()

	if got := calls.Load(); got != 1 {
		t.Errorf("refresh calls = %d; want 1", got)
	}

	for i, pair := range results {
		if pair == nil || pair.Access != "a2" {
			t.Errorf("result %d = %+v; want access a2", i, pair)
		}
	}
}

func TestRefreshGroupKeepsResult(t *testing.T) {
	t.Parallel()

	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

	var mu sync.Mutex

	clock := func() time.Time {
		mu.Lock()
		defer mu.Unlock()

		return now
	}
	g := newRefreshGroup(clock)

	calls := 0
	refresh := func() (*tokenPair, error) {
		calls++
		return &tokenPair{Access: "a"}, nil
	}

	for range 3 {
		if _, err := g.do(context.Background(), "state-1", refresh); err != nil {
			t.Fatalf("do() error = %v", err)
		}
	}

	if calls != 1 {
		t.Errorf("calls within refreshResultTTL = %d; want 1", calls)
	}

	mu.Lock()
	now = now.Add(refreshResultTTL + time.Second)
	mu.Unlock()

	if _, err := g.do(context.Background(), "state-1", refresh); err != nil {
		t.Fatalf("do() error = %v", err)
	}

	if calls != 2 {
		t.Errorf("calls after refreshResultTTL = %d; want 2", calls)
	}
}

func TestRefreshGroupForgetsFailure(t *testing.T) {
	t.Parallel()

	g := newRefreshGroup(time.Now)
	calls := 0
	fail := errors.New("upstream down")

	for range 2 {
		_, err := g.do(context.Background(), "state-1", func() (*tokenPair, error) {
			calls++
			return nil, fail
		})
		if !errors.Is(err, fail) {
			t.Errorf("do() error = %v; want %v", err, fail)
		}
	}

	if calls != 2 {
		t.Errorf("calls = %d; want 2, because a failure is not kept", calls)
	}
}

func TestRefreshGroupBoundsResults(t *testing.T) {
	t.Parallel()

	base := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	tick := 0
	g := newRefreshGroup(func() time.Time {
		tick++
		return base.Add(time.Duration(tick) * time.Millisecond)
	})

	refresh := func() (*tokenPair, error) { return &tokenPair{Access: "a"}, nil }

	for i := range maxRefreshResults + 5 {
		if _, err := g.do(context.Background(), refreshKey("r", base.Add(time.Duration(i)*time.Second)), refresh); err != nil {
			t.Fatalf("do() error = %v", err)
		}
	}

	// The last call pruned before it added its own result.
	if got := len(g.calls); got != maxRefreshResults+1 {
		t.Errorf("kept results = %d; want %d", got, maxRefreshResults+1)
	}
}

func TestRefreshKeyDependsOnState(t *testing.T) {
	t.Parallel()

	at := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

	if refreshKey("r", at) == refreshKey("r", at.Add(time.Second)) {
		t.Error("refreshKey() is equal for two access expiries; want different keys")
	}

	if refreshKey("r1", at) == refreshKey("r2", at) {
		t.Error("refreshKey() is equal for two refresh tokens; want different keys")
	}

	if refreshKey("r", at) != refreshKey("r", at.In(time.FixedZone("X", 3600))) {
		t.Error("refreshKey() depends on the time zone; want the same key")
	}
}
