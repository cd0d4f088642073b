package bearer

// DisableJWTCache makes v verify every JWT in full, for the benchmark
// that shows what the cache saves.
func DisableJWTCache(v *Verifier) { v.noJWTCache = true }

// Waiting is the number of requests waiting on an introspection call.
func Waiting(v *Verifier) int { return int(v.waiting.Load()) }

// CacheLen is the number of cached verdicts.
func CacheLen(v *Verifier) int { return v.cache.len() }
