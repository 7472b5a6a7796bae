package main

import (
	"encoding/json"
	"errors"
	"testing"
	"time"
)

func TestSetTimeAndFreeze(t *testing.T) {
	a := newAgent()
	var set []time.Time
	a.setTime = func(t time.Time) error { set = append(set, t); return nil }
	frozen := 0
	a.freeze = func() (int, error) { frozen++; return 2, nil }
	a.thaw = func() (int, error) { return 2, nil }
	tests := []struct{ req, want string }{
		{`{"execute":"guest-set-time","arguments":{"time":1764781200000000000}}`, `{"return":{}}`},
		{`{"execute":"guest-set-time"}`, `{"error":{"class":"GenericError","desc":"Parameter 'time' is missing (this agent does not read the RTC)"}}`},
		{`{"execute":"guest-fsfreeze-status"}`, `{"return":"thawed"}`},
		{`{"execute":"guest-fsfreeze-freeze"}`, `{"return":2}`},
		{`{"execute":"guest-fsfreeze-status"}`, `{"return":"frozen"}`},
		{`{"execute":"guest-fsfreeze-freeze"}`, `{"error":{"class":"GenericError","desc":"Command guest-fsfreeze-freeze has been disabled: the agent is in frozen state"}}`},
		{`{"execute":"guest-fsfreeze-thaw"}`, `{"return":2}`},
		{`{"execute":"guest-fsfreeze-status"}`, `{"return":"thawed"}`},
	}
	for _, tt := range tests {
		got, _ := json.Marshal(call(t, a, tt.req))
		var want map[string]any
		_ = json.Unmarshal([]byte(tt.want), &want)
		wb, _ := json.Marshal(want)
		if string(got) != string(wb) {
			t.Errorf("%s:\n got %s\nwant %s", tt.req, got, wb)
		}
	}
	if len(set) != 1 || !set[0].Equal(time.Unix(0, 1764781200000000000)) || frozen != 1 {
		t.Errorf("set %v, froze %d times", set, frozen)
	}
	a.setTime = func(time.Time) error { return errors.New("EPERM") }
	if m := call(t, a, `{"execute":"guest-set-time","arguments":{"time":1}}`); m["error"] == nil {
		t.Errorf("a failed set-time answered %v", m)
	}
}
