package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"time"
)

// emulatorClient reads the request counters of the AISquare emulator from
// GET /_emulator/counters (see package aisquaretest).
type emulatorClient struct {
	baseURL string
	http    *http.Client
}

// newEmulatorClient returns a client of the emulator at baseURL, or nil
// when baseURL is empty.
func newEmulatorClient(baseURL string) *emulatorClient {
	if baseURL == "" {
		return nil
	}

	return &emulatorClient{
		baseURL: strings.TrimRight(baseURL, "/"),
		http:    &http.Client{Timeout: 10 * time.Second},
	}
}

// requestCounts returns the emulator's count of API requests by endpoint,
// over all users, including failed ones. A nil client returns nil.
func (c *emulatorClient) requestCounts(ctx context.Context) (map[string]int, error) {
	if c == nil {
		return nil, nil
	}

	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.baseURL+"/_emulator/counters", nil)
	if err != nil {
		return nil, fmt.Errorf("read the emulator's counters: %w", err)
	}

	resp, err := c.http.Do(req)
	if err != nil {
		return nil, fmt.Errorf("read the emulator's counters: %w", err)
	}
	defer resp.Body.Close()

	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("read the emulator's counters: GET %s returned %s", req.URL, resp.Status)
	}

	var body struct {
		Total struct {
			Requests map[string]int `json:"requests"`
		} `json:"total"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		return nil, fmt.Errorf("read the emulator's counters: invalid JSON from GET %s: %w", req.URL, err)
	}

	return body.Total.Requests, nil
}

// subtractCounts returns after minus before, by key, leaving out keys whose
// difference is 0. It returns nil when after is nil.
func subtractCounts(after, before map[string]int) map[string]int {
	if after == nil {
		return nil
	}

	diff := make(map[string]int)

	for key, count := range after {
		if d := count - before[key]; d != 0 {
			diff[key] = d
		}
	}

	return diff
}
