package sessions

import "fmt"

// Capabilities names what a store can do beyond Store, found once when the
// handler is provisioned (CapabilitiesOf) rather than guessed by the code
// that needs it.
type Capabilities struct {
	// Shared stores keep sessions outside the handler, where other handlers
	// and instances, operators and the IdP's logouts change and end them:
	// a decoded session kept in memory is used only while Checker says it
	// is still stored, and a refresh happens under Locker's lock after
	// reading the session again. A shared store implements both; nil for
	// a store whose sessions live only in the cookie.
	Checker Checker
	Locker  Locker
	// Manager lists and ends sessions without their cookies (the admin
	// API, back- and front-channel logout, max_sessions_per_user); nil
	// when the store cannot.
	Manager Manager
	// Pinger and Reporter feed the admin API's health view; nil when the
	// store has nothing to say.
	Pinger   Pinger
	Reporter Reporter
	// DropsTokens says the store keeps sessions without their tokens (the
	// cookie store's drop_tokens): a session just saved is then kept in
	// memory without them too, as every later read will give it, so that
	// no instance refreshes, revokes or hands on tokens the cookie lacks.
	DropsTokens bool
}

// TokenDropper is a store that may keep sessions without their tokens.
type TokenDropper interface {
	DropsTokens() bool
}

// Shared reports whether the store's sessions can change outside the
// handler (see Capabilities.Checker).
func (c Capabilities) Shared() bool { return c.Checker != nil }

// CapabilitiesOf reads what s implements. A store with only one of
// Checker and Locker is refused: half a shared store would either serve
// sessions ended elsewhere or refresh from stale copies.
func CapabilitiesOf(s Store) (Capabilities, error) {
	var c Capabilities
	c.Checker, _ = s.(Checker)
	c.Locker, _ = s.(Locker)
	c.Manager, _ = s.(Manager)
	c.Pinger, _ = s.(Pinger)
	c.Reporter, _ = s.(Reporter)
	if d, ok := s.(TokenDropper); ok {
		c.DropsTokens = d.DropsTokens()
	}
	if (c.Checker == nil) != (c.Locker == nil) {
		return c, fmt.Errorf("store %T implements only one of sessions.Checker and sessions.Locker: a shared store needs both", s)
	}
	return c, nil
}
