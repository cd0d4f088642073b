package session

import (
	"encoding/json"
	"strconv"
)

// decodeSession is json.Unmarshal(data, s) for a new s, made cheap for what
// Save writes: a session is decoded on every protected request, and
// encoding/json spends a dozen allocations and most of the time on
// reflection for it. The fast path makes one string of data and slices
// every string field from it. Anything it was not written for (escapes,
// non-ASCII, null, unknown or differently cased keys, floats) goes to
// encoding/json, so the result is always what encoding/json gives;
// FuzzDecodeSession holds it to that.
func decodeSession(data []byte, s *Session) error {
	if decodeFast(data, s) {
		return nil
	}
	*s = Session{}
	return json.Unmarshal(data, s)
}

func decodeFast(data []byte, s *Session) bool {
	str := string(data) // the one copy all string fields share
	i := skipSpace(str, 0)
	if i >= len(str) || str[i] != '{' {
		return false
	}
	i = skipSpace(str, i+1)
	if i < len(str) && str[i] == '}' {
		return skipSpace(str, i+1) == len(str)
	}
	for {
		key, j, ok := plainString(str, i)
		if !ok {
			return false
		}
		i = skipSpace(str, j)
		if i >= len(str) || str[i] != ':' {
			return false
		}
		i = skipSpace(str, i+1)
		switch key {
		case "id", "sub", "sid", "idt", "at", "rt", "tt":
			v, j, ok := plainString(str, i)
			if !ok {
				return false
			}
			*stringField(s, key) = v
			i = j
		case "ate", "iat", "seen", "exp":
			n, j, ok := plainInt(str, i)
			if !ok {
				return false
			}
			*intField(s, key) = n
			i = j
		case "ui":
			j, ok := valueEnd(str, i)
			if !ok || str[i] == 'n' || !json.Valid(data[i:j]) {
				return false
			}
			s.Userinfo = json.RawMessage(str[i:j])
			i = j
		default:
			return false
		}
		i = skipSpace(str, i)
		if i >= len(str) {
			return false
		}
		switch str[i] {
		case ',':
			i = skipSpace(str, i+1)
		case '}':
			return skipSpace(str, i+1) == len(str)
		default:
			return false
		}
	}
}

func stringField(s *Session, key string) *string {
	switch key {
	case "id":
		return &s.ID
	case "sub":
		return &s.Subject
	case "sid":
		return &s.ProviderSID
	case "idt":
		return &s.IDToken
	case "at":
		return &s.AccessToken
	case "rt":
		return &s.RefreshToken
	}
	return &s.TokenType
}

func intField(s *Session, key string) *int64 {
	switch key {
	case "ate":
		return &s.AccessExpiry
	case "iat":
		return &s.CreatedAt
	case "seen":
		return &s.LastSeen
	}
	return &s.ExpiresAt
}

func skipSpace(s string, i int) int {
	for i < len(s) && (s[i] == ' ' || s[i] == '\t' || s[i] == '\n' || s[i] == '\r') {
		i++
	}
	return i
}

// plainString reads the JSON string at s[i] if it is printable ASCII
// without escapes, and returns its content and the index after it.
func plainString(s string, i int) (string, int, bool) {
	if i >= len(s) || s[i] != '"' {
		return "", 0, false
	}
	for j := i + 1; j < len(s); j++ {
		switch c := s[j]; {
		case c == '"':
			return s[i+1 : j], j + 1, true
		case c < 0x20 || c == '\\' || c >= 0x80:
			return "", 0, false
		}
	}
	return "", 0, false
}

// plainInt reads a JSON integer without fraction or exponent that fits int64.
func plainInt(s string, i int) (int64, int, bool) {
	j := i
	if j < len(s) && s[j] == '-' {
		j++
	}
	start := j
	for j < len(s) && s[j] >= '0' && s[j] <= '9' {
		j++
	}
	if j == start || (s[start] == '0' && j > start+1) {
		return 0, 0, false
	}
	if j < len(s) && (s[j] == '.' || s[j] == 'e' || s[j] == 'E') {
		return 0, 0, false
	}
	n, err := strconv.ParseInt(s[i:j], 10, 64)
	if err != nil {
		return 0, 0, false
	}
	return n, j, true
}

// valueEnd finds the end of the JSON value at s[i] by matching strings
// and brackets; json.Valid checks the value afterwards.
func valueEnd(s string, i int) (int, bool) {
	depth := 0
	for j := i; j < len(s); j++ {
		switch s[j] {
		case '"':
			for j++; j < len(s) && s[j] != '"'; j++ {
				if s[j] == '\\' {
					j++
				}
			}
			if j >= len(s) {
				return 0, false
			}
		case '{', '[':
			depth++
			continue
		case '}', ']':
			depth--
		case ',', ' ', '\t', '\n', '\r':
			if depth == 0 {
				return j, j > i
			}
			continue
		default:
			continue
		}
		if depth == 0 {
			return j + 1, true
		}
		if depth < 0 {
			return 0, false
		}
	}
	return len(s), depth == 0 && len(s) > i
}
