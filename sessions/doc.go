// Package sessions is the contract between oidc_session and its session
// stores: the Session model, the Store interface and the optional
// capabilities (Checker, Locker, Manager, Pinger, Reporter), the Env a
// store is bound to, the errors it returns, the codec and the
// authenticated encryption that protect sessions, and TicketStore, the
// core that server-side stores share. The cookie store (CookieStore) lives
// here too; the memory and Redis stores are its subpackages.
//
// # Adding a store
//
// A server-side store is a key-value store with expiry behind TicketStore,
// which does everything else: tickets in the cookie, per-session
// encryption, metadata and indexes, listings and ends, the per-user limit.
//
//  1. Implement Backend on your database: Get, Exists, GetMany, Set,
//     Replace (write only over a key that exists, atomically), Delete,
//     IndexAdd, IndexMembers, IndexRemove (a set of members with expiry
//     times), Scan (keys by prefix). Every error other than ErrNoSession
//     must wrap ErrUnavailable, so users are answered 503 rather than
//     logged out. Check it with storetest.RunBackend.
//
//  2. Make the store a Caddy module in the http.handlers.oidc_session.stores
//     namespace whose struct embeds TicketStore; in Provision, set
//     TicketStore.Backend, TicketStore.Name (the name listings show) and,
//     if you like, TicketStore.KeyPrefix. Share clients between configs in
//     a caddy.UsagePool so caddy reload keeps connections.
//
//  3. Implement Locker: a lock per session (see memstore for one process,
//     redisstore for several instances) under which one refresh of a
//     session happens at a time. With Locker, TicketStore's Exists makes
//     the store shared (see Capabilities): cached sessions are checked
//     before use and refreshes read the store again. Implement Pinger (and
//     Reporter) for the admin API's health view.
//
//  4. Implement caddyfile.Unmarshaler for `store <name> { ... }`, and
//     blank-import the package where Caddy is built (the root package does
//     it for the stores of this repository).
//
//  5. Run storetest.Run and storetest.RunManager on it: the same
//     conformance suites as the memory and Redis stores, including updates
//     racing an end and records lost behind the store's back.
//
// example_store_test.go follows these steps for a map-based store.
//
// A store that keeps sessions elsewhere than behind tickets (as the cookie
// store does) implements Store itself and runs storetest.Run with the
// options that fit it.
package sessions
