package loadtest

import "testing"

func TestPairOrder_AlternatesWhoGoesFirst(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		round         int
		first, second string
	}{
		{0, "bare", "gatehouse"},
		{1, "gatehouse", "bare"},
		{2, "bare", "gatehouse"},
		{5, "gatehouse", "bare"},
	} {
		first, second := pairOrder(tc.round, "bare", "gatehouse")
		if first != tc.first || second != tc.second {
			t.Errorf("round %d: order %s, %s; want %s, %s", tc.round, first, second, tc.first, tc.second)
		}
	}
}
