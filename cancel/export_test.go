package cancel

// NewTableWithPopHook returns a table whose free-list pop calls hook
// between reading the head's next link and its CAS, so a test can make
// another goroutine's pops and pushes land in exactly that window.
func NewTableWithPopHook[T any](capacity int, hook func()) *Table[T] {
	t := NewTable[T](capacity)
	t.hookPop = hook
	return t
}
