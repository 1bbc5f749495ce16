package flow

import "time"

// Attempts run on worker goroutines that wait workerIdle for the next
// attempt before they end. A goroutine started per attempt begins with a
// small stack and grows it by copying, several times per attempt (the
// HTTP client and the JetStream calls are deep): in a max-throughput
// profile that copying took 8 % of the dispatcher's CPU. A reused worker
// keeps its grown stack.
const workerIdle = 10 * time.Second

type job struct {
	t    Task
	slot *Slot
}

// startAttempt hands j to an idle worker or starts one. mu is held.
// s.jobs has room for every idle worker, so the send never blocks.
func (s *Scheduler) startAttempt(j job) {
	s.wg.Add(1)
	if s.idleWorkers > 0 {
		s.idleWorkers--
		s.jobs <- j
		return
	}
	go s.work(j)
}

func (s *Scheduler) work(j job) {
	idle := time.NewTimer(workerIdle)
	defer idle.Stop()
	for {
		s.run(j.t, j.slot)
		idle.Reset(workerIdle)
		select {
		case j = <-s.jobs:
			continue
		case <-idle.C:
		case <-s.quit:
		}
		// Leave, unless a job was sent while this worker still counted
		// as idle: whichever worker takes a sent job, each send was
		// matched by one idle worker leaving the count.
		s.mu.Lock()
		select {
		case j = <-s.jobs:
			s.mu.Unlock()
			continue
		default:
		}
		s.idleWorkers--
		s.mu.Unlock()
		return
	}
}

// run makes one attempt, then counts the worker idle before pump, so that
// the attempt pump starts can go to this very worker.
func (s *Scheduler) run(t Task, slot *Slot) {
	t.Run(s.ctx, slot)
	slot.Done(Outcome{})
	s.mu.Lock()
	s.running--
	s.idleWorkers++
	s.pump(s.now())
	s.mu.Unlock()
	s.wg.Done()
}
