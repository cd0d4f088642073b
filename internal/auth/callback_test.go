package auth

import (
	"encoding/json"
	"testing"
)

func TestStoredUserinfo_DropsDuplicatesButKeepsRoles(t *testing.T) {
	t.Parallel()
	idClaims := map[string]any{"sub": "u1", "name": "Old Name", "urn:zitadel:iam:org:project:roles": map[string]any{"a": map[string]any{"o": "d"}}}
	out, err := storedUserinfo(map[string]any{
		"sub": "u1", "email": "e@x", "name": "New Name", "urn:zitadel:iam:org:project:roles": map[string]any{"a": map[string]any{"o": "d"}},
	}, idClaims)
	if err != nil {
		t.Fatal(err)
	}
	var got map[string]any
	_ = json.Unmarshal(out, &got)
	if len(got) != 3 || got["email"] != "e@x" || got["name"] != "New Name" || got["urn:zitadel:iam:org:project:roles"] == nil {
		t.Fatalf("kept %v, want the claim the ID token lacks, the one whose value differs, and the roles (read from userinfo alone)", got)
	}
}
