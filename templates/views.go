package templates

// Frame is what the layout around every page needs.
type Frame struct {
	Title    string // the page's own title; the layout appends " · Gatehouse"
	SignedIn bool
	UserName string
	Path     string // the request's path, to mark the current navigation link
	// Origin is Gatehouse's public origin when the page is shown on a
	// protected app's host (a forward-auth answer): links and assets then
	// point back to Gatehouse, and sign-out is a link to its page (a form
	// posted from another origin is refused). "" on Gatehouse's own pages.
	Origin string
}

// Message is a friendly page: never a raw error, never a value from the request.
type Message struct {
	Status  int
	Title   string
	Text    string
	Tone    string // error, warn, ok
	Actions []Action
}

// Action is a link on a message page.
type Action struct {
	Href, Label string
	Secondary   bool
}

// SignIn is the sign-in page.
type SignIn struct {
	Banner      *Banner // why the last sign-in did not complete; nil for none
	CallbackURL string  // already accepted by the return-URL policy; empty for none
}

// Banner is the alert at the top of the sign-in page.
type Banner struct{ Title, Text string }

// EndSession is the page that posts the sign-out to the provider.
type EndSession struct {
	Action string // the provider's end_session_endpoint
	Fields []Field
}

// Field is one hidden form field.
type Field struct{ Name, Value string }

// Profile is the profile page.
type Profile struct {
	Subject, Name, Email, Username string
	Org                            Org
	Roles                          []Role
	Metadata                       []Metadata
	Initials                       string
	SinceISO, SinceText            string
	ExpiresISO, ExpiresText        string
	Groups                         []ClaimGroup
	RawJSON                        string
	OpenRaw                        bool // open the raw claims (the ?tab=claims link)
}

// Admin is the admin page.
type Admin struct {
	Role  string // the role the page needs
	Org   Org
	Roles []Role
}

// Org is the user's organisation.
type Org struct{ Name, Domain string }

// Role is a project role and the organisations that granted it.
type Role struct {
	Name string
	Orgs []string
}

// Metadata is one user metadata entry, its value decoded.
type Metadata struct{ Key, Value string }

// ClaimGroup is one table on the profile page.
type ClaimGroup struct {
	ID, Title, Note string
	Rows            []ClaimRow
}

// ClaimRow is one line of a claims table.
type ClaimRow struct {
	Name  string   // as in the token
	Parts []string // Name split after each ':', so long URNs wrap there
	Label string   // what it means; empty for claims Gatehouse does not know
	Value string   // for people: a date for timestamps, "yes"/"no", lists joined
	Raw   string   // the value as sent, when Value is a rendering of it
	Code  bool     // Value is an identifier, hash or JSON: monospace
}
