package main

import "testing"

func TestFlagGiven_PicksTheMode(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		args          []string
		soak, compare bool
	}{
		{[]string{"gatehouse-load"}, false, false},
		{[]string{"gatehouse-load", "-quick"}, false, false},
		{[]string{"gatehouse-load", "-soak", "5m"}, true, false},
		{[]string{"gatehouse-load", "--soak=5m"}, true, false},
		{[]string{"gatehouse-load", "-compare", "/tmp/old"}, false, true},
		{[]string{"gatehouse-load", "-pairs", "10", "--compare=/tmp/old"}, false, true},
		{[]string{"gatehouse-load", "-compared"}, false, false}, // another flag, not -compare
		{[]string{"gatehouse-load", "compare"}, false, false},   // an argument, not a flag
		{[]string{"soak"}, false, false},                        // the program's name
	} {
		if got := soakRequested(tc.args); got != tc.soak {
			t.Errorf("soakRequested(%q) = %v, want %v", tc.args, got, tc.soak)
		}
		if got := compareRequested(tc.args); got != tc.compare {
			t.Errorf("compareRequested(%q) = %v, want %v", tc.args, got, tc.compare)
		}
	}
}
