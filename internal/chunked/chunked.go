// Package chunked is a growable array kept in chunks of a fixed size, for
// the tables an idle connection pays for: the poller's and the loop's
// records indexed by fd or by request, and the loop's timer heap.
//
// A slice that doubles when it fills holds up to twice what it needs, and
// each growth leaves the old array behind for the garbage collector, which
// lets the heap, and so the process's RSS, grow by as much again before it
// collects. An Array grows by one chunk at a time: it copies no element,
// leaves nothing behind but its small directory of chunks, and holds at
// most one chunk more than it needs. An element never moves, so a pointer
// from At stays valid while the Array lives. Element access costs one more
// load than a slice's.
package chunked

// Shift is log2 of a chunk's length. 256 elements keep a table of 32-byte
// records in 8 KiB chunks: small enough that a program with a handful of
// fds pays little, large enough that the directory stays a few words per
// thousand elements.
const Shift = 8

// Len is a chunk's length.
const Len = 1 << Shift

// Array is the array. The zero value is empty and ready to use; it is not
// safe for concurrent use.
type Array[T any] struct {
	chunks []*[Len]T
}

// Cap returns how many elements the chunks allocated so far hold; indexes
// below it are valid.
func (a *Array[T]) Cap() int { return len(a.chunks) << Shift }

// At returns the element at i, which must be below Cap.
func (a *Array[T]) At(i int) *T { return &a.chunks[i>>Shift][i&(Len-1)] }

// Grow makes indexes below n valid, adding zeroed chunks.
func (a *Array[T]) Grow(n int) {
	for a.Cap() < n {
		a.chunks = append(a.chunks, new([Len]T))
	}
}

// Reset drops every chunk.
func (a *Array[T]) Reset() { a.chunks = nil }
