package flow

// fifo is a first-in first-out queue on a slice. Taken slots are zeroed
// (no task or key is kept alive by the queue) and the slice is compacted
// once it is mostly taken, so a long-lived queue does not grow for ever.
type fifo[T any] struct {
	items []T
	head  int
}

func (f *fifo[T]) push(v T) { f.items = append(f.items, v) }

func (f *fifo[T]) len() int { return len(f.items) - f.head }

// front returns the oldest item; the queue must not be empty.
func (f *fifo[T]) front() T { return f.items[f.head] }

// pop takes the oldest item; the queue must not be empty.
func (f *fifo[T]) pop() T {
	v := f.items[f.head]
	var zero T
	f.items[f.head] = zero
	f.head++
	switch {
	case f.head == len(f.items):
		f.items, f.head = f.items[:0], 0
	case f.head > 1024 && f.head > len(f.items)/2:
		n := copy(f.items, f.items[f.head:])
		clear(f.items[n:])
		f.items, f.head = f.items[:n], 0
	}
	return v
}

// popBack takes the newest item; the queue must not be empty.
func (f *fifo[T]) popBack() T {
	last := len(f.items) - 1
	v := f.items[last]
	var zero T
	f.items[last] = zero
	f.items = f.items[:last]
	if f.head == len(f.items) {
		f.items, f.head = f.items[:0], 0
	}
	return v
}

// all returns the items, oldest first; changing one changes the queue's.
func (f *fifo[T]) all() []T { return f.items[f.head:] }

// takeAll empties the queue and returns what it held.
func (f *fifo[T]) takeAll() []T {
	out := append([]T(nil), f.all()...)
	f.items, f.head = nil, 0
	return out
}
