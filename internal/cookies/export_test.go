package cookies

// Internals the external tests (package cookiejar_test) check against.
const (
	ChunkSize = chunkSize
	MaxChunks = maxChunks
)
