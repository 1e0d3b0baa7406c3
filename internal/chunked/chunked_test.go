package chunked

import (
	"testing"
)

// TestArrayMatchesSlice: an Array grown in steps holds what a slice grown
// the same way holds, new elements are zero, and a pointer taken before a
// growth still names the same element after it (nothing is copied).
func TestArrayMatchesSlice(t *testing.T) {
	var a Array[uint64]
	var s []uint64
	type ptr struct {
		p *uint64
		i int
	}
	var kept []ptr
	for step, n := range []int{0, 1, Len - 1, Len, Len + 1, 3*Len + 7, 3*Len + 7, 10 * Len} {
		a.Grow(n)
		if a.Cap() < n || a.Cap() >= n+Len && n > 0 {
			t.Fatalf("step %d: Grow(%d) left Cap %d: want at least n and under n+%d", step, n, a.Cap(), Len)
		}
		for len(s) < n {
			s = append(s, 0)
		}
		for i := range s {
			if got := *a.At(i); got != s[i] {
				t.Fatalf("step %d: At(%d) = %d, the slice holds %d", step, i, got, s[i])
			}
		}
		for i := range s { // write a new value everywhere
			v := uint64(step*1_000_000 + i + 1)
			*a.At(i) = v
			s[i] = v
		}
		for _, k := range kept { // taken before this step's growth and writes
			if *k.p != s[k.i] {
				t.Fatalf("step %d: a pointer to element %d taken earlier reads %d, the element is %d", step, k.i, *k.p, s[k.i])
			}
		}
		if n > 0 {
			kept = append(kept, ptr{a.At(n - 1), n - 1})
		}
	}
	a.Reset()
	if a.Cap() != 0 {
		t.Fatalf("Cap after Reset = %d", a.Cap())
	}
}

// BenchmarkAt compares an Array's element access with a slice's.
func BenchmarkAt(b *testing.B) {
	const n = 1 << 14
	var a Array[uint64]
	a.Grow(n)
	s := make([]uint64, n)
	b.Run("chunked", func(b *testing.B) {
		for i := 0; i < b.N; i++ {
			*a.At(i & (n - 1))++
		}
	})
	b.Run("slice", func(b *testing.B) {
		for i := 0; i < b.N; i++ {
			s[i&(n-1)]++
		}
	})
}
