package reactor

// OutBufferCap returns the capacity of c's output buffer: the memory that
// holds its pending output.
func OutBufferCap(c *Conn) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.out.held()
}
