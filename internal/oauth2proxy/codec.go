package oauth2proxy

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"fmt"
	"io"
	"time"

	"github.com/pierrec/lz4/v4"
	"github.com/vmihailenco/msgpack/v5"
)

// maxStateLen bounds a decompressed or decrypted session. The input was
// authenticated before (by the cookie signature or by AES-GCM), so this
// only keeps a holder of a secret from making one request cost a lot.
const maxStateLen = 1 << 20

// state is oauth2-proxy's session as it encodes it in msgpack, under its
// short field names. Fields it has that are not needed here (the login
// nonce) are skipped when decoding, and so are fields of later versions.
type state struct {
	CreatedAt         *time.Time `msgpack:"ca"`
	ExpiresOn         *time.Time `msgpack:"eo"`
	AccessToken       string     `msgpack:"at"`
	IDToken           string     `msgpack:"it"`
	RefreshToken      string     `msgpack:"rt"`
	Email             string     `msgpack:"e"`
	User              string     `msgpack:"u"`
	Groups            []string   `msgpack:"g"`
	PreferredUsername string     `msgpack:"pu"`
}

func decodeState(packed []byte) (*state, error) {
	var st state
	if err := msgpack.Unmarshal(packed, &st); err != nil {
		return nil, fmt.Errorf("%w: msgpack: %w", ErrDecrypt, err)
	}
	return &st, nil
}

// fill copies the session's fields into s.
func (st *state) fill(s *Session) {
	s.Email, s.User, s.PreferredUsername, s.Groups = st.Email, st.User, st.PreferredUsername, st.Groups
	s.IDToken, s.AccessToken, s.RefreshToken = st.IDToken, st.AccessToken, st.RefreshToken
	if st.CreatedAt != nil {
		s.CreatedAt = st.CreatedAt.UTC()
	}
	if st.ExpiresOn != nil {
		s.ExpiresOn = st.ExpiresOn.UTC()
	}
}

// decodeCookieSession decrypts and decodes the payload of a cookie-store
// value: IV, then AES-CFB of an LZ4 frame of the msgpack session.
func (s *cookieSecret) decodeCookieSession(payload []byte) (*state, error) {
	if len(payload) < aes.BlockSize {
		return nil, fmt.Errorf("%w: %d bytes, shorter than the IV", ErrDecrypt, len(payload))
	}
	iv, ciphertext := payload[:aes.BlockSize], payload[aes.BlockSize:]
	compressed := make([]byte, len(ciphertext))
	// CFB is deprecated because it is not authenticated; that is the
	// format oauth2-proxy wrote, and the HMAC over this very ciphertext
	// has been verified already.
	cipher.NewCFBDecrypter(s.block, iv).XORKeyStream(compressed, ciphertext) //nolint:staticcheck // the format requires CFB
	packed, err := readLimited(lz4.NewReader(bytes.NewReader(compressed)))
	if err != nil {
		return nil, fmt.Errorf("%w: lz4: %w", ErrDecrypt, err)
	}
	return decodeState(packed)
}

// readLimited reads all of r, refusing more than maxStateLen bytes.
func readLimited(r io.Reader) ([]byte, error) {
	b, err := io.ReadAll(io.LimitReader(r, maxStateLen+1))
	if err != nil {
		return nil, err
	}
	if len(b) > maxStateLen {
		return nil, fmt.Errorf("more than %d bytes", maxStateLen)
	}
	return b, nil
}

// openRecord decrypts and decodes a Redis record: nonce, then AES-GCM
// under the ticket's secret of the msgpack session.
func openRecord(secret, record []byte) (*state, error) {
	block, err := aes.NewCipher(secret)
	if err != nil {
		return nil, fmt.Errorf("%w: ticket secret: %w", ErrMalformed, err)
	}
	gcm, err := cipher.NewGCM(block)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrDecrypt, err)
	}
	n := gcm.NonceSize()
	if len(record) < n+gcm.Overhead() {
		return nil, fmt.Errorf("%w: record of %d bytes is too short", ErrDecrypt, len(record))
	}
	plain, err := gcm.Open(nil, record[:n], record[n:], nil)
	if err != nil {
		return nil, fmt.Errorf("%w: record does not open with the ticket's secret", ErrDecrypt)
	}
	return decodeState(plain)
}
