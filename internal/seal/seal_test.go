package seal_test

import (
	"encoding/base64"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/gatehouse/gatehouse/internal/seal"
)

// The last character of a sealed value carries unused bits; a value that
// differs there decodes to the same bytes under lenient base64, and must
// not open: a cookie-value cache keyed by the string relies on one
// spelling per sealed value.
func TestOpen_RefusesOtherSpellingsOfTheSameBytes(t *testing.T) {
	t.Parallel()
	now := time.Unix(1_800_000_000, 0)
	s, err := seal.New("spelling-test-secret-0123456789abcdefgh", "", "test")
	if err != nil {
		t.Fatal(err)
	}
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
	for n := range 3 { // plaintext lengths that leave 2 or 4 unused bits, and none
		value := s.Seal("c", []byte(strings.Repeat("x", n)), now)
		last := strings.IndexByte(alphabet, value[len(value)-1])
		other := value[:len(value)-1] + string(alphabet[last^1]) // the lowest bit: unused when there are unused bits
		lenient, lerr := base64.RawURLEncoding.DecodeString(other)
		canonical, _ := base64.RawURLEncoding.DecodeString(value)
		sameBytes := lerr == nil && string(lenient) == string(canonical)
		_, _, _, err := s.Open("c", other, 0, now)
		if sameBytes && !errors.Is(err, seal.ErrInvalid) {
			t.Errorf("plaintext of %d bytes: another spelling of the sealed bytes opened (%v)", n, err)
		}
		if !sameBytes && err == nil {
			t.Errorf("plaintext of %d bytes: a changed value opened", n)
		}
	}
}
