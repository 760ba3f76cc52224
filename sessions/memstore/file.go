package memstore

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"hash"
	"hash/crc32"
	"io"
	"os"
	"path/filepath"
	"slices"
)

// The state file holds the backend's data as it is in memory: keys, values
// (sessions sealed with their ticket's secret, metadata sealed with the
// server's key), expiries, and the index sets (named by keyed hashes). It
// holds no subject, email or token in clear. Layout:
//
//	magic "oidc_session memory store\n"
//	uvarint version (1)
//	uvarint n, then n values:   string key, bytes value, varint expiry (unix ns)
//	uvarint n, then n indexes:  string key, uvarint m, then m members:
//	                            string member, varint expiry (unix ns)
//	4 bytes: CRC-32C of everything before, big-endian
//
// where a string or bytes is a uvarint length and the bytes.
const (
	fileMagic   = "oidc_session memory store\n"
	fileVersion = 1
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// snapshot is the live content of a state at one moment.
type snapshot struct {
	values  []snapValue
	indexes []snapIndex
	members []member // of all indexes, each index a range of it
	gen     uint64
}

type snapValue struct {
	key string
	val []byte // shared with the state: never written to
	exp int64
}

type snapIndex struct {
	key        string
	start, end int // its members are members[start:end]
}

// snapshot copies out what is live at t. Values are referred to, not
// copied (the state never writes into a stored value), and the members of
// every index go into one slice: the lock, which holds up writers, is held
// for a few big allocations.
func (st *state) snapshot(t int64) *snapshot {
	st.mu.RLock()
	defer st.mu.RUnlock()
	s := &snapshot{
		values:  make([]snapValue, 0, len(st.values)),
		indexes: make([]snapIndex, 0, len(st.indexes)),
		members: make([]member, 0, len(st.indexes)),
		gen:     st.gen,
	}
	for k, e := range st.values {
		if e.exp > t {
			s.values = append(s.values, snapValue{k, e.val, e.exp})
		}
	}
	for k, ix := range st.indexes {
		start := len(s.members)
		for _, m := range ix.members {
			if m.exp > t {
				s.members = append(s.members, m)
			}
		}
		if len(s.members) > start {
			s.indexes = append(s.indexes, snapIndex{k, start, len(s.members)})
		}
	}
	return s
}

// restore puts a snapshot read from the file into an empty state, then
// applies max to it.
func (st *state) restore(s *snapshot) {
	st.mu.Lock()
	defer st.mu.Unlock()
	st.values = make(map[string]*entry, len(s.values))
	st.indexes = make(map[string]*index, len(s.indexes))
	for _, v := range s.values {
		st.put(v.key, v.val, v.exp, false)
	}
	for _, si := range s.indexes {
		ix := &index{}
		for _, m := range s.members[si.start:si.end] {
			ix.add(m.name, m.exp)
			if e := st.values[m.name]; e != nil && e.ri >= 0 && !slices.Contains(e.in, si.key) {
				e.in = append(e.in, si.key)
			}
		}
		st.indexes[si.key] = ix
	}
	st.trim()
}

// writeFile writes the snapshot to path atomically: a temporary file in
// the same directory (mode 0600), synced, then renamed over path.
func writeFile(path string, s *snapshot) (err error) {
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(tmp)
		}
	}()
	if err = f.Chmod(0o600); err != nil {
		return err
	}
	w := &encoder{w: bufio.NewWriterSize(f, 1<<16), h: crc32.New(castagnoli)}
	w.raw([]byte(fileMagic))
	w.uvarint(fileVersion)
	w.uvarint(uint64(len(s.values)))
	for _, v := range s.values {
		w.bytes([]byte(v.key))
		w.bytes(v.val)
		w.varint(v.exp)
	}
	w.uvarint(uint64(len(s.indexes)))
	for _, ix := range s.indexes {
		w.bytes([]byte(ix.key))
		w.uvarint(uint64(ix.end - ix.start))
		for _, m := range s.members[ix.start:ix.end] {
			w.bytes([]byte(m.name))
			w.varint(m.exp)
		}
	}
	if err = w.finish(); err != nil {
		return err
	}
	if err = f.Sync(); err != nil {
		return err
	}
	if err = f.Close(); err != nil {
		return err
	}
	if err = os.Rename(tmp, path); err != nil {
		return err
	}
	// Make the rename itself durable; not every system can sync a
	// directory, and the file is complete either way.
	if d, derr := os.Open(dir); derr == nil {
		_ = d.Sync()
		d.Close()
	}
	return nil
}

type encoder struct {
	w   *bufio.Writer
	h   hash.Hash32
	buf [binary.MaxVarintLen64]byte
	err error
}

func (e *encoder) raw(b []byte) {
	if e.err != nil {
		return
	}
	e.h.Write(b)
	_, e.err = e.w.Write(b)
}

func (e *encoder) uvarint(v uint64) { e.raw(binary.AppendUvarint(e.buf[:0], v)) }
func (e *encoder) varint(v int64)   { e.raw(binary.AppendVarint(e.buf[:0], v)) }
func (e *encoder) bytes(b []byte)   { e.uvarint(uint64(len(b))); e.raw(b) }

func (e *encoder) finish() error {
	if e.err != nil {
		return e.err
	}
	if _, err := e.w.Write(binary.BigEndian.AppendUint32(nil, e.h.Sum32())); err != nil {
		return err
	}
	return e.w.Flush()
}

var errCorrupt = errors.New("not a memory store state file, or damaged")

// readFile reads a state file, leaving out what expired by t. It returns
// an error wrapping fs.ErrNotExist for a missing file, and reads the whole
// file before returning anything: a damaged file yields nothing.
func readFile(path string, t int64) (*snapshot, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	br := bufio.NewReaderSize(f, 1<<16)
	d := &decoder{r: br, h: crc32.New(castagnoli), limit: uint64(fi.Size())}
	s, err := d.snapshot(t)
	if err != nil {
		return nil, err
	}
	var sum [4]byte
	if _, err := io.ReadFull(br, sum[:]); err != nil {
		return nil, fmt.Errorf("%w: truncated", errCorrupt)
	}
	if binary.BigEndian.Uint32(sum[:]) != d.h.Sum32() {
		return nil, fmt.Errorf("%w: checksum mismatch", errCorrupt)
	}
	if _, err := br.ReadByte(); err != io.EOF {
		return nil, fmt.Errorf("%w: data after the checksum", errCorrupt)
	}
	return s, nil
}

type decoder struct {
	r     *bufio.Reader
	h     hash.Hash32
	limit uint64 // the file's size: no length or count can exceed it
	err   error
}

func (d *decoder) snapshot(t int64) (*snapshot, error) {
	magic := d.raw(uint64(len(fileMagic)))
	if d.err != nil || string(magic) != fileMagic {
		return nil, errCorrupt
	}
	if v := d.uvarint(); d.err == nil && v != fileVersion {
		return nil, fmt.Errorf("state file version %d, this Caddy reads version %d", v, fileVersion)
	}
	s := &snapshot{}
	for n := d.count(); d.err == nil && n > 0; n-- {
		key, val, exp := string(d.bytes()), d.bytes(), d.varint()
		if d.err == nil && exp > t {
			s.values = append(s.values, snapValue{key, val, exp})
		}
	}
	for n := d.count(); d.err == nil && n > 0; n-- {
		ix := snapIndex{key: string(d.bytes()), start: len(s.members)}
		for m := d.count(); d.err == nil && m > 0; m-- {
			name, exp := string(d.bytes()), d.varint()
			if d.err == nil && exp > t {
				s.members = append(s.members, member{name, exp})
			}
		}
		if ix.end = len(s.members); ix.end > ix.start {
			s.indexes = append(s.indexes, ix)
		}
	}
	if d.err != nil {
		return nil, d.err
	}
	return s, nil
}

// ReadByte reads through the hash, for binary.ReadUvarint.
func (d *decoder) ReadByte() (byte, error) {
	b, err := d.r.ReadByte()
	if err == nil {
		d.h.Write([]byte{b})
	}
	return b, err
}

func (d *decoder) fail(err error) {
	if d.err == nil {
		switch {
		case errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF):
			err = fmt.Errorf("%w: truncated", errCorrupt)
		case !errors.Is(err, errCorrupt):
			err = fmt.Errorf("%w: %w", errCorrupt, err)
		}
		d.err = err
	}
}

func (d *decoder) raw(n uint64) []byte {
	if d.err != nil {
		return nil
	}
	if n > d.limit {
		d.fail(fmt.Errorf("%w: length %d beyond the file's size", errCorrupt, n))
		return nil
	}
	b := make([]byte, n)
	if _, err := io.ReadFull(d.r, b); err != nil {
		d.fail(err)
		return nil
	}
	d.h.Write(b)
	return b
}

func (d *decoder) uvarint() uint64 {
	if d.err != nil {
		return 0
	}
	v, err := binary.ReadUvarint(d)
	if err != nil {
		d.fail(err)
	}
	return v
}

func (d *decoder) varint() int64 {
	if d.err != nil {
		return 0
	}
	v, err := binary.ReadVarint(d)
	if err != nil {
		d.fail(err)
	}
	return v
}

func (d *decoder) count() uint64 {
	n := d.uvarint()
	if n > d.limit {
		d.fail(fmt.Errorf("%w: count %d beyond the file's size", errCorrupt, n))
		return 0
	}
	return n
}

func (d *decoder) bytes() []byte { return d.raw(d.uvarint()) }
