package sessions

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
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
	aead cipher.AEAD
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
	block, err := aes.NewCipher(key)
	if err != nil {
		return k, err
	}
	k.aead, err = cipher.NewGCM(block)
	return k, err
}

// Seal encrypts and authenticates plain together with aad (which is
// authenticated but not stored). The result is version, key id, random nonce
// and ciphertext.
func (kr *Keyring) Seal(plain, aad []byte) []byte {
	return kr.keys[0].seal(plain, aad)
}

// Open reverses Seal with whichever key matches the value's key id.
func (kr *Keyring) Open(sealed, aad []byte) ([]byte, error) {
	if len(sealed) < sealOverhead || sealed[0] != sealVersion {
		return nil, errOpen
	}
	for _, k := range kr.keys {
		if subtle.ConstantTimeCompare(k.id[:], sealed[1:1+kidLen]) == 1 {
			if plain, err := k.open(sealed, aad); err == nil {
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
