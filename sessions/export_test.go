package sessions

// Internals the external tests (package sessions_test) check against.
const (
	SealOverhead = sealOverhead
	MaxDecoded   = maxDecoded
)

// SealSessionV1 seals as versions before v2 did (per-session keys salted
// with the AES key itself), for the compatibility tests.
func (kr *Keyring) SealSessionV1(sessionSecret, plain, aad []byte) []byte {
	k, err := kr.keys[0].derive(sessionSecret, true)
	if err != nil {
		panic(err)
	}
	return k.seal(plain, aad)
}

// AESKey is the raw AES key of the keyring's first secret.
func (kr *Keyring) AESKey() []byte { return kr.keys[0].raw }
