package sessions

// Internals the external tests (package sessions_test) check against.
const (
	ChunkSize    = chunkSize
	MaxChunks    = maxChunks
	SealOverhead = sealOverhead
	MaxDecoded   = maxDecoded
)
