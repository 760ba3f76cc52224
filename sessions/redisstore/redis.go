// Package redisstore keeps oidc_session sessions in Redis (standalone,
// Sentinel or Cluster), so several Caddy instances share them. Each session
// is encrypted with the secret of its own ticket, which only the user's
// cookie holds.
package redisstore

import (
	"cmp"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"

	"github.com/oidc-session/oidc_session/sessions"
)

func init() {
	caddy.RegisterModule(Store{})
}

// Store keeps sessions in Redis. The cookie holds a ticket
// {CookieName}-{ticketID}.{secret}; the key is [key_prefix]{CookieName}-{ticketID}
// and its value the session encrypted (AES-256-GCM) with a key derived from
// the ticket's secret, stored with SET EX for the session's remaining
// lifetime. Without the cookie, nothing in Redis can be read.
type Store struct {
	// Connection says how to reach Redis; its options (url, sentinel_*,
	// cluster_urls, db, username, password, tls, pool_size and the
	// timeouts) sit at the top level of the store's config.
	Connection

	// KeyPrefix is put in front of every key, to share a Redis with other
	// applications or deployments. Default: none.
	KeyPrefix string `json:"key_prefix,omitempty"`

	// LockTTL is the lifetime of a session's refresh lock; it is renewed
	// while the refresh runs, so it only matters if an instance dies
	// holding it. Default: 5s.
	LockTTL caddy.Duration `json:"lock_ttl,omitempty"`
	// LockWait is how long a request waits for another instance's refresh
	// of the same session before going on with the tokens it has.
	// Default: 15s (longer than a slow token call).
	LockWait caddy.Duration `json:"lock_wait,omitempty"`

	// RecheckInterval is how long this instance takes a session it found in
	// Redis as still there without asking again. Sessions ended through the
	// plugin (logout, the admin API, back-channel logout, the per-user
	// limit) are announced to every instance over Redis pub/sub and take
	// effect at once whatever this is; it bounds how long an end that is not
	// announced, or whose announcement is lost, goes unnoticed here (a record
	// deleted with redis-cli, evicted, or lost in a failover; a connection
	// that died without an error). While the announcements cannot be received
	// (Redis down, an ACL without channel access to the key prefix), every
	// request asks Redis. Negative (Caddyfile: always): ask Redis on every
	// request. Default: 1s. A session requested more often than this is
	// rechecked in the background (pipelined, a little more than once per
	// interval), so its requests do not wait; one requested more rarely
	// costs its request one check, sent together with the other requests'
	// checks in one pipeline.
	RecheckInterval caddy.Duration `json:"recheck_interval,omitempty"`

	sessions.TicketStore `json:"-"`

	client      redis.UniversalClient
	poolKey     string
	feed        *feed
	checks      *checkBatcher
	logger      *zap.Logger
	stopRecheck context.CancelFunc
}

// TLSConfig is TLS to Redis.
type TLSConfig struct {
	// CA is a PEM file of the CA(s) that sign the server's certificate.
	// Default: the system's roots.
	CA string `json:"ca,omitempty"`
	// Cert and Key are a PEM client certificate and its key, for mutual TLS.
	Cert string `json:"cert,omitempty"`
	Key  string `json:"key,omitempty"`
	// ServerName overrides the name checked in the server's certificate.
	ServerName string `json:"server_name,omitempty"`
	// InsecureSkipVerify accepts any server certificate. For tests only:
	// anyone on the path can then read every session.
	InsecureSkipVerify bool `json:"insecure_skip_verify,omitempty"`
}

// Connection is how to reach a Redis: standalone, Sentinel or Cluster,
// with its authentication, TLS, pool and timeouts. The redis store embeds
// it; the handler's migrate_oauth2_proxy uses it for oauth2-proxy's Redis.
// Open shares one client between all users of the same settings.
type Connection struct {
	// URL of a standalone Redis: redis://[user:password@]host:port[/db] or
	// rediss://... for TLS. Exactly one of url, sentinel_master and
	// cluster_urls is required.
	URL string `json:"url,omitempty"`

	// SentinelMaster is the master name monitored by the sentinels.
	SentinelMaster string `json:"sentinel_master,omitempty"`
	// SentinelURLs are the sentinels, as host:port or redis://host:port[/db];
	// a db number in them selects the database.
	SentinelURLs []string `json:"sentinel_urls,omitempty"`
	// SentinelPassword authenticates to the sentinels themselves.
	SentinelPassword string `json:"sentinel_password,omitempty"`

	// ClusterURLs are seed nodes of a Redis Cluster, as host:port or
	// redis://host:port.
	ClusterURLs []string `json:"cluster_urls,omitempty"`

	// DB selects the database (not for Cluster). Default: from the URL, or 0.
	DB int `json:"db,omitempty"`
	// Username and Password authenticate to Redis (ACL user or
	// requirepass). Placeholders such as {env.REDIS_PASSWORD} work.
	Username string `json:"username,omitempty"`
	Password string `json:"password,omitempty"`

	// TLS configures TLS to Redis (also implied by a rediss:// URL).
	TLS *TLSConfig `json:"tls,omitempty"`

	// PoolSize is the connection pool size per node. Default: go-redis's
	// (10 per CPU).
	PoolSize int `json:"pool_size,omitempty"`
	// DialTimeout, ReadTimeout and WriteTimeout bound each attempt of a
	// Redis call (go-redis retries a failed call up to 3 times), and so how
	// long a request waits before answering 503 when Redis is down or hangs.
	// Defaults: 2s, 1s, 1s.
	DialTimeout  caddy.Duration `json:"dial_timeout,omitempty"`
	ReadTimeout  caddy.Duration `json:"read_timeout,omitempty"`
	WriteTimeout caddy.Duration `json:"write_timeout,omitempty"`
}

// CaddyModule returns the Caddy module information.
func (Store) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "http.handlers.oidc_session.stores.redis",
		New: func() caddy.Module { return new(Store) },
	}
}

// clients shares one Redis client per distinct connection config across
// handlers and config reloads: a reload provisions the new config before
// cleaning up the old one, so the client (and its connections) live on.
var clients = caddy.NewUsagePool()

type pooledClient struct{ redis.UniversalClient }

func (c pooledClient) Destruct() error { return c.Close() }

// Provision connects lazily: go-redis dials on first use, so Caddy starts
// while Redis is down and recovers on its own when it comes back.
func (s *Store) Provision(ctx caddy.Context) error {
	s.logger = ctx.Logger()
	key, client, err := s.Connection.open()
	if err != nil {
		return err
	}
	repl := caddy.NewReplacer()
	s.poolKey = key
	s.client = client
	s.TicketStore.Name = "redis"
	s.TicketStore.KeyPrefix = repl.ReplaceKnown(s.KeyPrefix, "")
	s.feed, err = useFeed(key, s.TicketStore.KeyPrefix, s.client, s.logger)
	if err != nil {
		return err
	}
	s.checks = newCheckBatcher(s.client)
	s.TicketStore.Backend = backend{client: s.client, feed: s.feed, checks: s.checks}
	if s.RecheckInterval == 0 {
		s.RecheckInterval = caddy.Duration(time.Second)
	}
	if s.LockTTL == 0 {
		s.LockTTL = caddy.Duration(5 * time.Second)
	}
	if s.LockWait == 0 {
		s.LockWait = caddy.Duration(15 * time.Second)
	}
	s.startRecheck()
	return nil
}

// Cleanup releases this handler's use of the shared client.
func (s *Store) Cleanup() error {
	if s.stopRecheck != nil {
		s.stopRecheck()
	}
	if s.checks != nil {
		s.checks.stop()
	}
	if s.poolKey == "" {
		return nil
	}
	var err error
	if s.feed != nil {
		err = releaseFeed(s.poolKey, s.TicketStore.KeyPrefix)
	}
	_, cerr := clients.Delete(s.poolKey)
	return errors.Join(err, cerr)
}

// Report implements sessions.Reporter: whether ended sessions are heard of
// at once, or every request asks Redis.
func (s *Store) Report() string {
	switch {
	case s.RecheckInterval < 0:
		return "recheck_interval always: every request asks Redis"
	case s.feed.set.listening():
		return "subscribed to ended sessions on " + s.feed.channel
	case s.feed.set.isSubscribed():
		return "subscribed to ended sessions on " + s.feed.channel + " but Redis is silent: every request asks Redis"
	}
	return "not subscribed to ended sessions on " + s.feed.channel + ": every request asks Redis"
}

// Exists implements sessions.Checker. A session this instance found in
// Redis less than recheck_interval ago is taken as still there without a
// round trip, as long as the feed guarantees that its end would have been
// heard; anything else asks Redis.
func (s *Store) Exists(ctx context.Context, value string) (bool, error) {
	key, ok := s.RecordKey(value)
	if !ok {
		return false, nil
	}
	set := s.feed.set
	maxAge := time.Duration(s.RecheckInterval)
	if maxAge > 0 && set.trusted(key, maxAge) {
		return true, nil
	}
	q := set.ask()
	exists, err := s.Backend.Exists(ctx, key)
	if exists && maxAge > 0 {
		set.verified(key, q)
	}
	return exists, err
}

// Check reports what is wrong with the settings: none or several
// connection modes, sentinel half set, a db with Cluster, a TLS
// certificate without its key.
func (c *Connection) Check() error {
	modes := 0
	for _, set := range []bool{c.URL != "", c.SentinelMaster != "" || len(c.SentinelURLs) > 0, len(c.ClusterURLs) > 0} {
		if set {
			modes++
		}
	}
	switch {
	case modes == 0:
		return errors.New("redis: one of url, sentinel_master (with sentinel_urls) or cluster_urls is required")
	case c.SentinelMaster != "" && len(c.ClusterURLs) > 0 || len(c.SentinelURLs) > 0 && len(c.ClusterURLs) > 0:
		return errors.New("redis: sentinel and cluster are mutually exclusive: use either sentinel_master + sentinel_urls or cluster_urls")
	case modes > 1:
		return errors.New("redis: url cannot be combined with sentinel or cluster settings: use only one connection mode")
	case (c.SentinelMaster == "") != (len(c.SentinelURLs) == 0):
		return errors.New("redis: sentinel needs both sentinel_master and sentinel_urls")
	case c.DB < 0 || len(c.ClusterURLs) > 0 && c.DB != 0:
		return errors.New("redis: db must be >= 0, and Redis Cluster has only db 0")
	case c.TLS != nil && (c.TLS.Cert == "") != (c.TLS.Key == ""):
		return errors.New("redis: tls cert and key go together")
	}
	return nil
}

// Open checks the settings and returns a client for them (placeholders
// replaced), shared through a caddy.UsagePool with every store and handler
// of the same settings, so a reload keeps the connections; release gives
// this use back (call it in Cleanup). Nothing is dialled yet: go-redis
// connects on first use, so Caddy starts while Redis is down.
func (c *Connection) Open() (client redis.UniversalClient, release func() error, err error) {
	key, client, err := c.open()
	if err != nil {
		return nil, nil, err
	}
	return client, func() error { _, err := clients.Delete(key); return err }, nil
}

// open is Open with the client's key in the pool instead of a release.
func (c *Connection) open() (string, redis.UniversalClient, error) {
	if err := c.Check(); err != nil {
		return "", nil, err
	}
	conn := c.resolve(caddy.NewReplacer())
	key, err := conn.fingerprint()
	if err != nil {
		return "", nil, err
	}
	val, _, err := clients.LoadOrNew(key, func() (caddy.Destructor, error) {
		rc, err := conn.newClient()
		if err != nil {
			return nil, err
		}
		return pooledClient{rc}, nil
	})
	if err != nil {
		return "", nil, err
	}
	return key, val.(pooledClient).UniversalClient, nil
}

// connection is the resolved connection config: what identifies a client.
type connection struct {
	URL              string     `json:"url,omitempty"`
	SentinelMaster   string     `json:"sentinel_master,omitempty"`
	SentinelAddrs    []string   `json:"sentinel_addrs,omitempty"`
	SentinelPassword string     `json:"sentinel_password,omitempty"`
	ClusterAddrs     []string   `json:"cluster_addrs,omitempty"`
	DB               int        `json:"db,omitempty"`
	Username         string     `json:"username,omitempty"`
	Password         string     `json:"password,omitempty"`
	TLS              *TLSConfig `json:"tls,omitempty"`
	PoolSize         int        `json:"pool_size,omitempty"`
	Dial             time.Duration
	Read             time.Duration
	Write            time.Duration
}

// resolve replaces placeholders and applies defaults.
func (c *Connection) resolve(repl *caddy.Replacer) connection {
	r := func(v string) string { return repl.ReplaceKnown(v, "") }
	out := connection{
		URL:              r(c.URL),
		SentinelMaster:   r(c.SentinelMaster),
		SentinelPassword: r(c.SentinelPassword),
		DB:               c.DB,
		Username:         r(c.Username),
		Password:         r(c.Password),
		TLS:              c.TLS,
		PoolSize:         c.PoolSize,
		Dial:             durationOr(c.DialTimeout, 2*time.Second),
		Read:             durationOr(c.ReadTimeout, time.Second),
		Write:            durationOr(c.WriteTimeout, time.Second),
	}
	for _, u := range c.SentinelURLs {
		addr, db := hostPortDB(r(u))
		out.SentinelAddrs = append(out.SentinelAddrs, addr)
		if db > 0 && out.DB == 0 {
			out.DB = db
		}
	}
	for _, u := range c.ClusterURLs {
		addr, _ := hostPortDB(r(u))
		out.ClusterAddrs = append(out.ClusterAddrs, addr)
	}
	return out
}

// fingerprint names the config in the usage pool without keeping the
// password in the key.
func (c connection) fingerprint() (string, error) {
	b, err := json.Marshal(c)
	if err != nil {
		return "", err
	}
	sum := sha256.Sum256(b)
	return "oidc_session.redis:" + hex.EncodeToString(sum[:]), nil
}

func (c connection) newClient() (redis.UniversalClient, error) {
	tlsConf, err := c.tlsConfig()
	if err != nil {
		return nil, err
	}
	opts := &redis.UniversalOptions{
		Username:         c.Username,
		Password:         c.Password,
		SentinelPassword: c.SentinelPassword,
		DB:               c.DB,
		TLSConfig:        tlsConf,
		PoolSize:         c.PoolSize,
		DialTimeout:      c.Dial,
		ReadTimeout:      c.Read,
		WriteTimeout:     c.Write,
	}
	switch {
	case c.URL != "":
		u, err := redis.ParseURL(c.URL)
		if err != nil {
			return nil, fmt.Errorf("redis: url: %w", err)
		}
		// Settings given apart take precedence over those in the URL.
		opts.Addrs = []string{u.Addr}
		opts.Username = cmp.Or(opts.Username, u.Username)
		opts.Password = cmp.Or(opts.Password, u.Password)
		opts.DB = cmp.Or(opts.DB, u.DB)
		if opts.TLSConfig == nil {
			opts.TLSConfig = u.TLSConfig // rediss://
		}
	case c.SentinelMaster != "":
		opts.MasterName, opts.Addrs = c.SentinelMaster, c.SentinelAddrs
	default:
		opts.Addrs, opts.IsClusterMode = c.ClusterAddrs, true
	}
	return redis.NewUniversalClient(opts), nil
}

func (c connection) tlsConfig() (*tls.Config, error) {
	t := c.TLS
	if t == nil {
		return nil, nil
	}
	conf := &tls.Config{
		MinVersion:         tls.VersionTLS12,
		ServerName:         t.ServerName,
		InsecureSkipVerify: t.InsecureSkipVerify,
	}
	if t.CA != "" {
		pem, err := os.ReadFile(t.CA)
		if err != nil {
			return nil, fmt.Errorf("redis: tls ca: %w", err)
		}
		conf.RootCAs = x509.NewCertPool()
		if !conf.RootCAs.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("redis: tls ca %s holds no PEM certificate", t.CA)
		}
	}
	if t.Cert != "" {
		cert, err := tls.LoadX509KeyPair(t.Cert, t.Key)
		if err != nil {
			return nil, fmt.Errorf("redis: tls client certificate: %w", err)
		}
		conf.Certificates = []tls.Certificate{cert}
	}
	return conf, nil
}

// hostPortDB accepts host:port or redis[s]://host:port[/db].
func hostPortDB(v string) (string, int) {
	if !strings.Contains(v, "://") {
		return v, 0
	}
	u, err := url.Parse(v)
	if err != nil {
		return v, 0
	}
	db, _ := strconv.Atoi(strings.Trim(u.Path, "/"))
	return u.Host, db
}

func durationOr(d caddy.Duration, def time.Duration) time.Duration {
	if d > 0 {
		return time.Duration(d)
	}
	return def
}

// Interface guards
var (
	_ sessions.Store     = (*Store)(nil)
	_ sessions.Locker    = (*Store)(nil)
	_ sessions.Pinger    = (*Store)(nil)
	_ sessions.Checker   = (*Store)(nil)
	_ sessions.Reporter  = (*Store)(nil)
	_ caddy.Provisioner  = (*Store)(nil)
	_ caddy.CleanerUpper = (*Store)(nil)
)
