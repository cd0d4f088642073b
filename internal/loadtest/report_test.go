package loadtest

import (
	"math"
	"testing"
)

func TestReportRatio_MedianOverTheRoundsThatMeasuredBoth(t *testing.T) {
	t.Parallel()
	th := func(rps float64) Throughput { return Throughput{RPS: rps} }
	r := Report{Rounds: []map[string]Throughput{
		{Verify: th(80), BareVerify: th(100), OAuth2Auth: th(10)},
		{Verify: th(90), BareVerify: th(100)},
		{Verify: th(70), BareVerify: th(100)},
		{Verify: th(85), BareVerify: th(100), OAuth2Auth: th(20)},
		{BareVerify: th(100)}, // a pair cut short: not half a ratio
	}}
	for _, tc := range []struct {
		name, bare       string
		median, min, max float64
		n                int
	}{
		// Even count: the mean of the middle two, not the upper one.
		{Verify, BareVerify, 0.825, 0.70, 0.90, 4},
		{Verify, OAuth2Auth, 6.125, 4.25, 8, 2},
	} {
		got := r.RPSRatio(tc.name, tc.bare)
		if math.Abs(got.Median-tc.median) > 1e-9 || got.Min != tc.min || got.Max != tc.max || got.N != tc.n {
			t.Errorf("RPSRatio(%s, %s) = %+v, want median %v, %v–%v over %d", tc.name, tc.bare, got, tc.median, tc.min, tc.max, tc.n)
		}
	}
	if got := r.Median(OAuth2Auth, func(t Throughput) float64 { return t.RPS }); got != 15 {
		t.Errorf("Median(oauth2-proxy) = %v, want 15 (over the two rounds that measured it)", got)
	}
	if got, want := r.RPSRatio(Verify, BareVerify).String(), "82.5% (median of 4; 70–90%)"; got != want {
		t.Errorf("String() = %q, want %q", got, want)
	}
}
