package web

import (
	"reflect"
	"testing"
)

func TestClaimGroups_GroupsExplainsAndRendersClaims(t *testing.T) {
	t.Parallel()
	claims := map[string]any{
		"email":          "alice@example.com",
		"sub":            "300000000000000001",
		"email_verified": true,
		"exp":            float64(1795994441),
		"aud":            []any{"gatehouse", "other"},
		"urn:zitadel:iam:org:project:roles": map[string]any{
			"viewer": map[string]any{"1": "a.example"}, "admin": map[string]any{"1": "a.example"},
		},
		"urn:zitadel:iam:user:metadata": map[string]any{"team": "cGxhdGZvcm0="},
		"custom":                        map[string]any{"x": float64(1)},
	}
	groups := claimGroups(claims)

	var titles []string
	rows := map[string]claimRow{}
	var order []string
	for _, g := range groups {
		titles = append(titles, g.Title)
		for _, r := range g.Rows {
			rows[r.Name] = r
			order = append(order, r.Name)
		}
	}
	if want := []string{"About you", "About the token", "ZITADEL", "Other claims"}; !reflect.DeepEqual(titles, want) {
		t.Errorf("groups = %q, want %q", titles, want)
	}
	if order[0] != "sub" || order[1] != "email" {
		t.Errorf("familiar claims first: got order %q", order)
	}

	tests := []struct {
		name, value, raw string
		code             bool
	}{
		{"sub", "300000000000000001", "", true},
		{"email_verified", "true", "", true},
		{"exp", "29 Nov 2026, 23:20:41 UTC", "1795994441", false},
		{"aud", "gatehouse, other", "", true},
		{"urn:zitadel:iam:org:project:roles", "admin, viewer", `{"admin":{"1":"a.example"},"viewer":{"1":"a.example"}}`, false},
		{"urn:zitadel:iam:user:metadata", "team: platform", `{"team":"cGxhdGZvcm0="}`, false},
		{"custom", `{"x":1}`, "", true},
	}
	for _, tc := range tests {
		r, ok := rows[tc.name]
		if !ok {
			t.Errorf("%s: missing", tc.name)
			continue
		}
		if r.Value != tc.value || r.Raw != tc.raw || r.Code != tc.code {
			t.Errorf("%s = (%q, raw %q, code %v), want (%q, raw %q, code %v)", tc.name, r.Value, r.Raw, r.Code, tc.value, tc.raw, tc.code)
		}
	}
	if rows["exp"].Label == "" || rows["custom"].Label != "" {
		t.Errorf("labels: exp %q (want one), custom %q (want none)", rows["exp"].Label, rows["custom"].Label)
	}
	if got := rows["urn:zitadel:iam:user:metadata"].Parts; len(got) != 5 || got[0] != "urn:" {
		t.Errorf("claim name parts = %q, want split after each ':'", got)
	}
}

func TestClaimGroups_LeavesOutEmptyGroups(t *testing.T) {
	t.Parallel()
	groups := claimGroups(map[string]any{"sub": "1"})
	if len(groups) != 1 || groups[0].ID != "you" {
		t.Errorf("groups = %+v, want only \"you\"", groups)
	}
}
