package aisquaretest

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"
)

// Fault makes API endpoints fail or slow down, to test a client's error
// handling and retries.
//
// Faults form a queue. Each API request with an allowed method and a body
// within MaxRequestBodyBytes takes the first fault in the queue that matches
// its endpoint, and at most one. A
// fault with Count 0 therefore hides later faults for the same endpoints
// until ClearFaults.
//
// In JSON, Latency is written as "latency_ms", an integer number of
// milliseconds.
type Fault struct {
	// Endpoint is the endpoint name the fault applies to (EndpointLogin and
	// the other Endpoint constants), or "" for every API endpoint.
	Endpoint string `json:"endpoint"`
	// Status is the HTTP status sent instead of handling the request, with
	// the body {"detail": "injected fault: status N", "code":
	// "emulator_fault"}. 0 means the request is handled normally after
	// Latency.
	Status int `json:"status"`
	// RetryAfter, when greater than 0, is sent as the Retry-After header in
	// seconds. It is meant for status 429 or 503.
	RetryAfter int `json:"retry_after"`
	// Latency is the delay before the response, or before handling when
	// Status is 0. The wait ends early when the client cancels the request,
	// and then no response is sent.
	Latency time.Duration `json:"-"`
	// Count is the number of matching requests the fault applies to before it
	// is dropped. 0 means until ClearFaults.
	Count int `json:"count"`
}

// faultJSON is the JSON form of Fault.
type faultJSON struct {
	Endpoint   string `json:"endpoint"`
	Status     int    `json:"status"`
	RetryAfter int    `json:"retry_after"`
	LatencyMS  int64  `json:"latency_ms"`
	Count      int    `json:"count"`
}

// MarshalJSON encodes the fault with Latency as "latency_ms".
func (f Fault) MarshalJSON() ([]byte, error) {
	return json.Marshal(faultJSON{
		Endpoint:   f.Endpoint,
		Status:     f.Status,
		RetryAfter: f.RetryAfter,
		LatencyMS:  f.Latency.Milliseconds(),
		Count:      f.Count,
	})
}

// UnmarshalJSON decodes a fault with Latency given as "latency_ms". Unknown
// fields are an error, so that a misspelled field is not silently ignored.
func (f *Fault) UnmarshalJSON(data []byte) error {
	var decoded faultJSON
	decoder := json.NewDecoder(bytes.NewReader(data))
	decoder.DisallowUnknownFields()
	if err := decoder.Decode(&decoded); err != nil {
		return err
	}

	*f = Fault{
		Endpoint:   decoded.Endpoint,
		Status:     decoded.Status,
		RetryAfter: decoded.RetryAfter,
		Latency:    time.Duration(decoded.LatencyMS) * time.Millisecond,
		Count:      decoded.Count,
	}
	return nil
}

// validateFault returns an error describing the first invalid field of f.
func validateFault(f Fault) error {
	endpoints := []string{"", EndpointLogin, EndpointRefresh, EndpointBlacklist, EndpointVerify, EndpointMe}
	switch {
	case !slices.Contains(endpoints, f.Endpoint):
		return fmt.Errorf("unknown endpoint %q; use login, refresh, blacklist, verify, me or \"\" for all", f.Endpoint)
	case f.Status != 0 && (f.Status < 200 || f.Status > 599):
		return fmt.Errorf("status %d is not 0 or an HTTP status from 200 to 599", f.Status)
	case f.RetryAfter < 0:
		return fmt.Errorf("retry_after %d is negative", f.RetryAfter)
	case f.Latency < 0:
		return fmt.Errorf("latency %s is negative", f.Latency)
	case f.Count < 0:
		return fmt.Errorf("count %d is negative", f.Count)
	case f.Status == 0 && f.Latency == 0:
		return errors.New("fault has neither a status nor a latency, so it would change nothing")
	}
	return nil
}

// InjectFault appends f to the fault queue. It panics when f is invalid: an
// unknown endpoint, a status outside 200–599 other than 0, a negative
// field, or neither Status nor Latency set.
func (e *Emulator) InjectFault(f Fault) {
	if err := e.injectFault(f); err != nil {
		panic("aisquaretest: InjectFault: " + err.Error())
	}
}

func (e *Emulator) injectFault(f Fault) error {
	if err := validateFault(f); err != nil {
		return err
	}

	e.mu.Lock()
	defer e.mu.Unlock()

	e.faults = append(e.faults, f)
	return nil
}

// ClearFaults removes every fault from the queue.
func (e *Emulator) ClearFaults() {
	e.mu.Lock()
	defer e.mu.Unlock()

	e.faults = nil
}

// pendingFaults returns a copy of the fault queue, with each Count being
// the number of requests left.
func (e *Emulator) pendingFaults() []Fault {
	e.mu.Lock()
	defer e.mu.Unlock()

	return append([]Fault{}, e.faults...)
}

// takeFault returns the first queued fault that matches endpoint, and uses
// up one of its Count.
func (e *Emulator) takeFault(endpoint string) (Fault, bool) {
	e.mu.Lock()
	defer e.mu.Unlock()

	for i := range e.faults {
		queued := &e.faults[i]
		if queued.Endpoint != "" && queued.Endpoint != endpoint {
			continue
		}

		matched := *queued
		if queued.Count > 0 {
			queued.Count--
			if queued.Count == 0 {
				e.faults = slices.Delete(e.faults, i, i+1)
			}
		}
		return matched, true
	}
	return Fault{}, false
}

// sleepContext waits for d and reports whether it did, or returns false as
// soon as ctx is done.
func sleepContext(ctx context.Context, d time.Duration) bool {
	timer := time.NewTimer(d)
	defer timer.Stop()

	select {
	case <-timer.C:
		return true
	case <-ctx.Done():
		return false
	}
}
