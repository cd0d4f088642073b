package session

import "github.com/gorilla/sessions"

// GorillaStore is st's backend as gorilla/sessions sees it.
func GorillaStore(st Store) sessions.Store {
	switch st := st.(type) {
	case *gorillaStore:
		return st.gs
	case *MemoryStore:
		return st.gs
	case *RedisStore:
		return st.gs
	}
	panic("session.GorillaStore: not a store of this package")
}
