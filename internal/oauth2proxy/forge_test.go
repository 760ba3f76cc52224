package oauth2proxy

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"strconv"
	"testing"
	"time"

	"github.com/pierrec/lz4/v4"
	"github.com/vmihailenco/msgpack/v5"
)

// What an attacker holding a cookie secret (or a test) can write: values
// in oauth2-proxy's formats, made here from the standard primitives. The
// real proxy's own output is tested in proxy_e2e_test.go; these make the
// cases a proxy never writes (old, future, broken inside a valid
// signature).

// sign is a signed cookie value of name for payload at the given time.
func sign(secret, name string, payload []byte, at time.Time) string {
	cs := cookieSecret{macKey: []byte(secret)}
	b := base64.URLEncoding.EncodeToString(payload)
	ts := strconv.FormatInt(at.Unix(), 10)
	return b + "|" + ts + "|" + base64.URLEncoding.EncodeToString(cs.mac(name, b, ts))
}

// encodeCookieSession is a cookie-store payload of st under secret.
func encodeCookieSession(t testing.TB, secret string, st *state) []byte {
	t.Helper()
	packed, err := msgpack.Marshal(st)
	if err != nil {
		t.Fatal(err)
	}
	return cfbPayload(t, secret, lz4Frame(t, packed))
}

// lz4Frame compresses b into an LZ4 frame of 64 KB blocks, as
// oauth2-proxy does.
func lz4Frame(t testing.TB, b []byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw := lz4.NewWriter(&buf)
	if err := zw.Apply(lz4.BlockSizeOption(lz4.Block64Kb)); err != nil {
		t.Fatal(err)
	}
	if _, err := zw.Write(b); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// cfbPayload is a random IV and plain encrypted with AES-CFB under the
// cookie secret's key.
func cfbPayload(t testing.TB, secret string, plain []byte) []byte {
	t.Helper()
	block, err := aes.NewCipher(aesKey(secret))
	if err != nil {
		t.Fatal(err)
	}
	out := make([]byte, aes.BlockSize+len(plain))
	rand.Read(out[:aes.BlockSize])
	cipher.NewCFBEncrypter(block, out[:aes.BlockSize]).XORKeyStream(out[aes.BlockSize:], plain) //nolint:staticcheck // the format requires CFB
	return out
}

// sealRecord is a Redis record of st under a ticket's secret.
func sealRecord(t testing.TB, secret []byte, st *state) []byte {
	t.Helper()
	packed, err := msgpack.Marshal(st)
	if err != nil {
		t.Fatal(err)
	}
	return gcmSeal(t, secret, packed)
}

func gcmSeal(t testing.TB, secret, plain []byte) []byte {
	t.Helper()
	block, err := aes.NewCipher(secret)
	if err != nil {
		t.Fatal(err)
	}
	gcm, err := cipher.NewGCM(block)
	if err != nil {
		t.Fatal(err)
	}
	nonce := make([]byte, gcm.NonceSize())
	rand.Read(nonce)
	return gcm.Seal(nonce, nonce, plain, nil)
}

// newTicket is a fresh ticket key of cookie name and a 16-byte secret, as
// oauth2-proxy makes them.
func newTicket(name string) ticket {
	id := make([]byte, 16)
	secret := make([]byte, 16)
	rand.Read(id)
	rand.Read(secret)
	return ticket{key: name + "-" + hex.EncodeToString(id), secret: secret}
}

// v2 is the ticket in its current cookie form.
func (t ticket) v2() []byte {
	return []byte("v2." + base64.RawURLEncoding.EncodeToString([]byte(t.key)) + "." + base64.RawURLEncoding.EncodeToString(t.secret))
}

// legacy is the ticket in its older cookie form.
func (t ticket) legacy() []byte {
	return []byte(t.key + "." + base64.RawURLEncoding.EncodeToString(t.secret))
}
