package sessions

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"
)

// MinSecretLength is the shortest cookie secret accepted. Secrets are run
// through HKDF, so any string works, but a short one can be guessed offline
// from a single captured cookie.
const MinSecretLength = 32

const (
	sealVersion = 1
	kidLen      = 4
	// sealOverhead is version + key id + nonce + GCM tag.
	sealOverhead = 1 + kidLen + 12 + 16
)

var errOpen = errors.New("cannot decrypt: tampered, truncated or made with an unknown secret")

// Keyring encrypts with its first key and decrypts with any of them, so a
// secret can be rotated by putting the new one first: sessions sealed under
// the old one keep working until they expire.
type Keyring struct {
	keys []sealKey
}

type sealKey struct {
	id   [kidLen]byte
	raw  []byte // the AES key; before v2 also the salt and MAC key below
	aead cipher.AEAD
	// salt salts the derivation of per-session keys, mac keys the index
	// MACs: each purpose has its own key, derived from the secret.
	salt []byte
	mac  []byte
}

// NewKeyring derives one AES-256-GCM key per secret with HKDF-SHA256. The
// purpose separates the keys of different uses (session cookies, flow
// cookies) made from the same secret; the key id stored in every value is
// derived too, so it reveals nothing about the secret.
func NewKeyring(purpose string, secrets ...string) (*Keyring, error) {
	if len(secrets) == 0 {
		return nil, errors.New("at least one secret is required")
	}
	kr := &Keyring{}
	for i, secret := range secrets {
		if len(secret) < MinSecretLength {
			return nil, fmt.Errorf("secret #%d is %d characters long; it must be at least %d (generate one with: openssl rand -base64 32)", i+1, len(secret), MinSecretLength)
		}
		k, err := deriveKey([]byte(secret), purpose)
		if err != nil {
			return nil, err
		}
		kr.keys = append(kr.keys, k)
	}
	return kr, nil
}

func deriveKey(secret []byte, purpose string) (sealKey, error) {
	var k sealKey
	key, err := hkdf.Key(sha256.New, secret, nil, "oidc_session/v1/key/"+purpose, 32)
	if err != nil {
		return k, err
	}
	id, err := hkdf.Key(sha256.New, secret, nil, "oidc_session/v1/kid/"+purpose, kidLen)
	if err != nil {
		return k, err
	}
	copy(k.id[:], id)
	if k.salt, err = hkdf.Key(sha256.New, secret, nil, "oidc_session/v2/ticket-salt/"+purpose, 32); err != nil {
		return k, err
	}
	if k.mac, err = hkdf.Key(sha256.New, secret, nil, "oidc_session/v2/index-mac/"+purpose, 32); err != nil {
		return k, err
	}
	return k, k.setKey(key)
}

func (k *sealKey) setKey(key []byte) error {
	block, err := aes.NewCipher(key)
	if err != nil {
		return err
	}
	k.raw = key
	k.aead, err = cipher.NewGCM(block)
	return err
}

// derive makes the key of one server-side session: from the session's own
// secret (which only its cookie holds) salted with a key of this server
// secret, so neither the store's contents with a stolen cookie nor a leaked
// server secret alone can decrypt a session. The key id stays the server
// key's, so rotation works as for cookies. legacy derives as versions
// before v2 did, salted with the AES key itself, to open their records.
func (k sealKey) derive(sessionSecret []byte, legacy bool) (sealKey, error) {
	sub := sealKey{id: k.id}
	salt := k.salt
	if legacy {
		salt = k.raw
	}
	key, err := hkdf.Key(sha256.New, sessionSecret, salt, "oidc_session/v1/key/ticket", 32)
	if err != nil {
		return sub, err
	}
	return sub, sub.setKey(key)
}

// Seal encrypts and authenticates plain together with aad (which is
// authenticated but not stored). The result is version, key id, random nonce
// and ciphertext.
func (kr *Keyring) Seal(plain, aad []byte) []byte {
	return kr.keys[0].seal(plain, aad)
}

// Open reverses Seal with whichever key matches the value's key id.
func (kr *Keyring) Open(sealed, aad []byte) ([]byte, error) {
	return kr.open(sealed, aad, func(k sealKey) (sealKey, error) { return k, nil })
}

// SealSession is Seal under the key derived for one server-side session
// from its own secret.
func (kr *Keyring) SealSession(sessionSecret, plain, aad []byte) ([]byte, error) {
	k, err := kr.keys[0].derive(sessionSecret, false)
	if err != nil {
		return nil, err
	}
	return k.seal(plain, aad), nil
}

// OpenSession reverses SealSession, and opens records sealed before v2.
func (kr *Keyring) OpenSession(sessionSecret, sealed, aad []byte) ([]byte, error) {
	if plain, err := kr.open(sealed, aad, func(k sealKey) (sealKey, error) { return k.derive(sessionSecret, false) }); err == nil {
		return plain, nil
	}
	return kr.open(sealed, aad, func(k sealKey) (sealKey, error) { return k.derive(sessionSecret, true) })
}

// MACs returns an HMAC-SHA256 of data under each key, current key first,
// then the same under the MAC keys of versions before v2 (the AES keys):
// names derived from a value (an index by subject) that reveal nothing
// without the secret. The first is the one to write; looking up under all
// of them keeps rotation working and finds indexes written before v2.
func (kr *Keyring) MACs(data string) []string {
	out := make([]string, 0, 2*len(kr.keys))
	for _, legacy := range []bool{false, true} {
		for _, k := range kr.keys {
			key := k.mac
			if legacy {
				key = k.raw
			}
			m := hmac.New(sha256.New, key)
			m.Write([]byte("oidc_session/v1/index\x00" + data))
			out = append(out, hex.EncodeToString(m.Sum(nil)[:16]))
		}
	}
	return out
}

func (kr *Keyring) open(sealed, aad []byte, key func(sealKey) (sealKey, error)) ([]byte, error) {
	if len(sealed) < sealOverhead || sealed[0] != sealVersion {
		return nil, errOpen
	}
	for _, k := range kr.keys {
		if subtle.ConstantTimeCompare(k.id[:], sealed[1:1+kidLen]) != 1 {
			continue
		}
		if dk, err := key(k); err == nil {
			if plain, err := dk.open(sealed, aad); err == nil {
				return plain, nil
			}
		}
	}
	return nil, errOpen
}

func (k sealKey) seal(plain, aad []byte) []byte {
	ns := k.aead.NonceSize()
	out := make([]byte, 1+kidLen+ns, 1+kidLen+ns+len(plain)+k.aead.Overhead())
	out[0] = sealVersion
	copy(out[1:], k.id[:])
	rand.Read(out[1+kidLen:]) // never fails (crypto/rand panics instead)
	return k.aead.Seal(out, out[1+kidLen:], plain, aad)
}

func (k sealKey) open(sealed, aad []byte) ([]byte, error) {
	ns := k.aead.NonceSize()
	hdr := 1 + kidLen
	return k.aead.Open(nil, sealed[hdr:hdr+ns], sealed[hdr+ns:], aad)
}
