// Package reactor is oneshot's public API: event loops serving one-shot poll
// requests with an exactly-once guarantee, and a connection layer for
// servers built on them.
//
// # Requests
//
// Arm (callback) and Poll (blocking) each start one request. A request that
// was accepted completes exactly once, with exactly one of: ready events, a
// kernel error, ErrCanceled, ErrClosed (the reactor closed), ErrFdClosed
// (CloseFd closed its fd) or os.ErrDeadlineExceeded (ArmDeadline). Cancel is
// safe from any goroutine at any time and reports whether that one completion
// is ErrCanceled. The collisions between submitter, loop, cancellers and the
// closer are decided by package cancel's state machine; this package only
// carries out the obligations each transition hands it:
//
//	who                 what it does                          cancel transition
//	------------------  ------------------------------------  -----------------------------
//	Arm/Poll (any g.)   take a slot, fill it, push to inbox   Table.Acquire (Submitted)
//	loop, inbox         arm the poller for the slot's tag     Arm → MustArm | MustDeliver
//	loop, poller event  look the tag up, decide               Lookup, Wake → Deliver/Requeue
//	loop, arm refused   complete with the error               Steal(Failed)
//	Cancel (any g.)     decide Canceled; if armed, ask loop   Cancel → MustAskLoopToCancel
//	loop, opCancel      deliver now, disarm in the kernel     Withdraw
//	loop, a reader's    disarm in the kernel, deliver at its  Cancel, then Wake/Disarmed
//	receive stopped     end, bytes before it                  (Received → MustConsume)
//	loop, deadline      decide Closed meaning "deadline"      Close, Withdraw
//	loop, CloseFd       decide Closed meaning "fd closed",    Close, Withdraw, then
//	                    forget fd in the poller, close(2)     Poller.Forget, close
//	loop, Reactor.Close decide Closed for every live slot     Range, Close, Withdraw
//	loop, delivery      outcome read, slot released if the    Delivered → MustRelease
//	                    kernel owes nothing, callback run
//
// On the loop one executor (act) carries out every Action a transition
// returns, whoever reported what happened: the inbox's arm, the kernel's
// completion, a cancel, a deadline, CloseFd, the reactor's Close, and the
// connection layer's own requests (whose refused arms complete through
// their callbacks like any other). Off the loop, a Cancel that must
// withdraw an armed request posts it to the loop. A Conn's receive
// through the ring is the one request outside the table: only its loop
// ever touches it, so it is a small state machine of its own, kept in the
// Conn's place on the loop (conn_table.go), with the same rule: its end
// reaches the Conn once, and its tag is reused only after the kernel's
// end, in a new generation of the place.
//
// Kernel tags are cancel's 64-bit (slot, generation) tags, so an event the
// kernel posts after its request completed, or after the fd's number was
// reused, finds a different generation and is dropped (Stats.StaleDropped).
// A Conn's receive's tag is its place and the place's generation, with
// cancel.CallerBit set: the generation moves on at each receive's end, so
// a cancel the kernel runs late finds nothing.
//
// # Loops and threads
//
// Each loop is an ordinary goroutine that, between turns, parks in Go's
// runtime netpoller (unless Config.KernelWait, below) on its poller's descriptor (the epoll fd, or the ring fd
// of an io_uring set up COOP_TASKRUN, which any thread may enter). A
// completion readies the loop goroutine on whichever P noticed it, and what
// the loop readies in turn (a Poll waiter, a goroutine its callback
// signalled) runs on that same P: no OS thread is woken to hand work over.
// The loop's turns run inside one netpoller read, so a wake-up costs one
// non-blocking look at the poller. Other goroutines wake a parked loop by
// moving that read's deadline into the past, which costs no system call;
// its timers are that deadline; a loop woken that way yields once before
// its turn, so that it and the waiters it readies cannot pass the P to each
// other for a whole time slice while other goroutines wait. The loop's
// non-blocking reads, writes and looks take the raw system-call entry: the
// scheduler's entry wakes sysmon whenever the program was idle, which a
// loop that parks after every message would pay per message.
//
// Loops locked to OS threads of their own (blocking in epoll_wait or
// io_uring_enter, the ring SINGLE_ISSUER|DEFER_TASKRUN) were the first
// design and, until 2026-11-29, Config.LockThreads; they came back on
// 2026-11-30 as Config.KernelWait, below, once the cost that made them
// lose was found. make compare (3 rounds,
// one loop pinned to one CPU, server CPU µs per message, parked against
// locked, io_uring) measured 36.3 against 42.2 at 1 connection × 64 B,
// 11.9 against 12.2 at 100 × 64 B, 16.0 against 18.6 at 1,000 × 64 B, and
// 15.2 against 15.1 at 50 × 16 KiB; the wake cycle (BenchmarkPollCycle,
// BenchmarkArmCycle) took 1.2-1.3× Go's netpoller parked and 3.5-5.4×
// locked, whose every wake crosses threads twice. No load needed the
// locked loop, so it went. Config.LockLoops locks a parked loop to its
// thread, which 2 busy loops on io_uring measured cheaper (a receive's
// completion work runs on the thread that submitted it); a lightly loaded
// loop, which parks after every message, and the wake cycle measured
// dearer, so it is off by default.
//
// That cost was the scheduler's, not the kernel's. A goroutine that waits
// in a system call through the ordinary entry lets sysmon take its P; a
// loop goroutine, which never passes through the scheduler between
// messages, looks to sysmon like one that has run too long, so sysmon
// takes the P at nearly every wait, wakes another thread to hold it, and
// the loop's thread must win it back when the wait returns: measured on a
// minimal Go io_uring echo loop at one connection, 0.4-0.7 nanosleep and
// 0.1-0.7 futex calls and 1.8 context switches a message, and 1.4-1.7×
// the C server's CPU. Waiting through the raw entry, holding the P, the
// same loop made 1.99 system calls and 1 context switch a message and
// cost what C did. Config.KernelWait is that: a locked loop whose busy
// waits hold its P (runInKernel, kernelwait.go), whose idle ones give it
// up, for servers whose handlers answer on the loop. echod sets it
// (--kernel-wait). Under load such a loop gathers its batches: the enter
// that hands a turn's requests over waits, for 50 µs at most, for as many
// completions as the turn served, so that a loaded loop enters the kernel
// and wakes once a batch rather than once a message. The mode's price is
// everything else on that P: a goroutine the loop readies (a Poll waiter,
// a net.Conn reader) runs when the loop idles or is preempted, unless
// another P is free; the net.Conn conformance suite (TestNettestConn) took
// 13 s with it against 2 s without.
//
// An fd armed through Arm and Poll belongs to loop fd % Loops for its
// whole life, so a reused fd number
// lands on the loop that knew its previous owner. A Conn lives on the loop
// its listener handed it to, whatever its number; that is safe because
// every close (CloseFd's and a Conn's) makes the owning poller forget the
// fd before close(2), so no registration of an old life survives on any
// loop when the number comes back.
//
// Other goroutines reach a loop through its inbox: a mutex-guarded slice the
// loop swaps out whole each turn (a multi-producer single-consumer queue
// that allocates nothing in steady state). A producer wakes the loop only
// when the loop sleeps in Wait (a Dekker pair on the inbox's length and the
// loop's sleeping flag), so commands posted while the loop runs, such as an
// Arm made from inside a callback, cost no system call and ride the same
// turn's batch. The connection layer, which always runs on its loop, arms
// and cancels directly without the inbox. The wake-up is poller.Wake.
//
// Timers are a binary heap per loop; the earliest deadline bounds Wait. A
// request deadline (ArmDeadline) is one more canceller, removed from the
// heap when its request completes first. A Conn's idle and read timeouts
// hold no entry: one deadline per loop, its sweep, due at the earliest of
// its Conns' idle and read deadlines, walks the loop's Conns when it
// passes, and its walks are spaced at least 1/64 of the shortest such
// timeout apart, so such a timeout closes a Conn up to 1/64 of it late (a
// 5-minute one, about 5 seconds) and a run of Conns expiring one after
// another costs a walk per spacing, not one each (a walk costs about 4 ns
// a Conn: 36 µs for 10,000, BenchmarkSweepWalk). What lasts only while a
// Conn backs up or closes (its write timeout, close-flush bound, linger)
// is one heap entry at a time, due at the earliest, recomputed when it
// fires. So reads and writes only store a time.
// A listening socket waiting out an accept backoff (rare, one per socket)
// is kept beside the heap (l.backoffs), so that an entry names its Conn
// with a pointer.
//
// # Connection layer
//
// Listen serves a stream socket (TCP, TCP over IPv6, Unix) with a Handler
// (OnOpen, OnData, OnClose, and OnEOF for an EOFHandler); ListenPacket
// serves UDP with a PacketHandler. Reads use the loop's one 64 KiB buffer,
// lent to OnData, and Conn output is a buffer allocated only while output
// is pending (in 16 KiB chunks from a pool: what is pending plus at most
// two partly used chunks, never moved once queued; with
// ListenConfig.SendInPlace the first chunk may be the receive buffer the
// bytes arrived in, lent until their send is done: loan.go), so an idle
// Conn holds no buffer. Conn.Write writes to the socket at once when nothing is pending
// (any goroutine; under the Conn's mutex, which close also takes before it
// frees the fd, so a write can never reach the fd number's next owner);
// what the socket refuses waits for Out readiness. Above MaxPending unsent
// bytes the Conn stops reading until its peer drains it. Peer EOF flushes
// then closes (or, for an EOFHandler, is reported and the handler closes);
// CloseWrite flushes then shuts the write side; Close flushes (bounded by
// CloseTimeout), then lingers until the peer's EOF (bounded by
// LingerTimeout) so that the close never resets a peer still sending with
// our output undelivered; CloseNow discards. OnClose runs exactly once per
// opened Conn, after its fd was closed. A Conn's life is a table of named
// phases and moves (conn_state.go), enforced where the moves are made; a
// read chunk costs the layer no lock (only the handler's Write takes one).
//
// # Readiness on epoll
//
// After readiness, a Conn reads until EAGAIN or a short read (a TCP
// socket's data exhausted, unless its wake-up also announced the peer's
// FIN or an urgent mark), and then waits with the poller.Edge promise: the
// fd stays registered edge-triggered from one wait to the next, as Go's
// runtime netpoller registers sockets, instead of re-arming a one-shot
// registration with an epoll_ctl per message. A wait made before the
// socket was emptied (after a pause, or four full buffers in a turn) polls
// the level. A NetConn waits after EAGAIN only, so it always keeps the
// promise. echod on epoll, pinned probes of the binaries before and after
// (2026-11-30): about 5% less CPU per message at 100 connections, 15-20%
// at 1,000.
//
// Peers that send without pause cannot starve a quiet Conn on their loop,
// on any read path: TestFloodDoesNotStarveOthers measures the flooders'
// bytes handed over between a ping's Write and its OnData (a mean of
// about 1 MiB, a worst of about 10 MiB on a loaded machine; a mean of
// 12-36 MiB when a Conn read its socket dry, and no answer at all when
// starved receives were always armed again).
//
// # Bytes through the ring
//
// On io_uring where the kernel has multishot RECV and provided-buffer rings
// (Linux 6.0; Config.IO, Reactor.IOPath), a Conn moves its bytes through
// the ring instead of after readiness polls. It reads with one multishot
// RECV that stays armed: the kernel reads the socket when data arrives,
// into one of the buffers its loop lent (Config.RecvBuffers), and the loop
// hands the bytes to OnData and takes the buffer back, so a message costs
// no poll and no read(2), and an idle Conn holds no buffer. Where the
// kernel can (the probe says so in Reactor.IOPath) the receive ends after
// 1 MiB and is armed again, so a peer that floods a Conn whose output
// backs up gets at most that much held when the Conn pauses; while the
// output backs up, and after a pause until it drains with the Conn open,
// a Conn receives one buffer at a time. With
// Config.RecvIncremental, where the kernel can (Linux 6.12), a receive
// takes only the bytes it brings, the next one continuing in the same
// buffer, so a turn in which a thousand Conns receive 64 bytes each uses
// one buffer of 64 KiB, not 1,000: with buffers taken whole, 256 a loop
// run out in such turns. A receive that ends for want of a buffer is
// armed again at once, its SQE going to the kernel in the turn's enter,
// when the turn's buffers are back; its Conn reads once after a poll
// only if it starves again before any bytes came, so none can starve for
// good (echod at 1,000 × 64 B with server and client sharing two CPUs:
// 0.34-0.46 read(2) a message when every starved receive read after a
// poll, 0.08-0.21 now, none incrementally; arming again however often it
// starved made no read(2) at all but doubled p99.9, as some Conns lost
// every turn). Incremental consumption is not the default because a
// message that crosses a buffer's end arrives in two pieces (echod at
// 50 × 16 KiB: 10% more CPU a message). On a loop with
// 8 Conns or more, or in a turn of 4 Events or more, the Writes of a
// handler call queue, and the loop sends each Conn's pending output with
// one SEND, at most one in flight per Conn, all of the turn's sends going
// to the kernel in its one io_uring_enter, which also collects what arrived
// meanwhile; a loop with few Conns writes at once, since a lone send costs
// an enter and then a wake-up of the loop (ringSendConns). A listening
// socket accepts with one multishot ACCEPT that stays armed (listen.go's
// acceptedOne), each connection's address then asked for with
// getpeername; a descriptor the kernel accepted is handed over, or
// closed, exactly once, however its accept was stopped, and Shutdown
// stops the accept and takes what it accepted before it drains the
// backlog. The receive protocol, and what happens to bytes a
// receive brought when it is being stopped (they are delivered first, or
// held while paused, never dropped), are tabled in conn_recv.go. Measured
// by make compare (2026-11-29, one loop, medians of 3): at 1,000
// connections × 64 B the server makes 1.4 system calls per message through
// the ring, as many as the C io_uring server, against 2.4 after polls, at
// the same CPU per message as that server; at one connection 4.0 against
// 6.0, and 25 µs of CPU a message against 32.
//
// # What an idle Conn costs
//
// An idle connection is one Conn, its read in flight and the ledgers that
// find them; no buffer (reads go to the loop's buffer, output chunks
// return to the listener's pool when sent), no goroutine, no closure, no
// map entry. unsafe.Sizeof of each part, on linux/amd64
// (TestIdleConnParts and poller's TestLedgerRecordSizes fail when one
// grows):
//
//	part                                 bytes  where
//	-----------------------------------  -----  ------------------------------
//	Conn                                   128  its own object (size class 128),
//	                                            the peer's address inline
//	its place among the loop's Conns        16  l.served (connPlace), which
//	                                            holds its receive's state and
//	                                            record on io_uring
//	the read request's cancel slot      0 / 64  io_uring: none, the receive
//	                                            is the Conn's own
//	                                            (conn_table.go); epoll: a
//	                                            readiness poll's
//	                                            cancel.Slot[reqData], in
//	                                            chunks of 256 slots
//	the poller's tag record             0 / 24  io_uring: 2 bytes in the
//	                                            place; epoll: 16 in its
//	                                            ledger, by tag index, and 8
//	                                            of list links
//	the poller's fd record (epoll)          24  its tag list and registration,
//	                                            on the loop serving it, and a
//	                                            4-byte index to it on each
//	                                            loop (none on io_uring)
//	a timer entry                            0  idle and read timeouts are
//	                                            the loop's sweep's (16 in
//	                                            l.timers while output stalls
//	                                            or the Conn closes)
//
// A Conn's receive through the ring is not a cancel request: only its
// loop arms it, stops it and sees it end, so the atomic state word of a
// slot guards against no one there. Its tag names the Conn's place on the
// loop (kept from open to finish, and past it, retired, until the
// kernel's end of a receive still in flight), and the place keeps the
// receive's few state bits and the poller's record (conn_table.go draws
// its table). A Conn keeps its other requests (a readiness poll, a send)
// by slot index (4 bytes, loop.reqAt) rather than by handle (16) or tag
// (8), and they are on no fd's list: the Conn finds them (closeConnFd),
// so the loop's table indexed by fd never spans a Conn's number. A slot names whom its outcome goes to in one
// interface (reqData.owner) rather than in a pointer per kind of owner,
// what its Failed or Closed outcome means beyond the errno in a one-byte
// code (reqData.why) rather than an error, a deadline in the command that
// arms the request rather than in every slot, and its neighbours on an
// fd's list by slot index (4 bytes) rather than by tag (8).
// What only a closing, failed, paused or oddly addressed Conn needs (its
// write error, its close reason, the linger and Shutdown state, an IPv6
// zone, a Unix peer's name, what it received while paused) is in a part
// allocated when first needed (connRare). Its pending output is a list
// linked through the chunks' own headers, 16 bytes in the Conn, and what
// WriteTimeout measures from sits on the first chunk, since it means
// something only while output is pending; the pending length is derived
// from the chunks' offsets. Its fd is 32 bits; its phase, whether a
// handler call is in progress, the tasks asked during one, the flags its
// mutex guards, the loop's own flags and the pending count share one
// atomic word (connWord: apart they took 8 bytes more, and with them and
// its requests kept by tag the Conn was 144 bytes, a size class up); its
// idle and read timeouts are its loop's sweep's, and the one heap entry
// it takes while output stalls or it closes needs no sequence number
// (schedule and finish remove the one before); and Shutdown finds it
// among its loop's Conns (l.served) rather than in a list of its
// Listener's (two links per Conn, and a lock per accept and per close). A
// timer entry names its Conn by its place in l.served, so the heap holds
// no pointer.
// The io_uring poller keeps what it must know of an armed tag (its events,
// its kind, and whether its cancel is on its way and its SQE may still be
// queued: a 2-byte poller.TagRecord) in the request's slot, in bytes the
// slot had spare, or in a Conn's place (poller.Options.Records,
// loop.Record), where its own ledger spent 16 bytes per tag; and, told that the loop disarms an fd's
// requests itself (poller.Options.CallerDisarms), neither the tag's links
// in a list of its fd's nor a record per fd number. epoll keeps its
// 16-byte record per tag, with the fd's list that routes its events. The tables indexed by fd or by
// request, and the timer heap, grow by chunks of 256 (internal/chunked): a
// slice that doubles held up to twice its rows and left its old array as
// garbage at each growth, which the heap, and so the RSS, grew by before
// the next collection. Accepting leaves no garbage: 3 allocations and as
// many bytes allocated as stay live per connection.
//
// Together 180 bytes of live heap per idle Conn on io_uring and 304 on
// epoll at 10,000 connections and one loop (BenchmarkIdleConnMemory, of
// which 32 are the benchmark handler's own), from 242 and 294 while the
// receive held a cancel slot and the place was 8 bytes, 258 (io_uring)
// with the poller's own 16-byte tag record, 274 and 306 with a
// 144-byte Conn, 364 and 388 with a 176-byte Conn, a 96-byte slot and a
// 32-byte poller record, 416 and 448 before that, and 585 and 637 at
// first. make idle-rss measures the process: RSS growth over 10,000 idle
// connections (echod, one loop, with its 5-minute idle timeout, which the
// loop's sweep watches): 169 bytes per connection on io_uring and 360 on
// epoll, gnet 548 (medians of 5, 2026-11-30; 233 and 345 while the
// receive held a slot, io_uring 227-235 in ten runs; 249 with the
// poller's own tag record, when one run in three or
// so met a collection and gave 311-323; 330 and 354 while each Conn held
// a timer entry, 342 and 368 with the 144-byte Conn, 452 and 473 that
// morning, 936 and 976 at first). What the RSS holds beyond the live heap
// is the runtime's, and most of it comes with a collection: the
// collector's metadata (MemStats.GCSys) grows about 0.7 MB in a collection
// at this heap's size, whatever the objects (10,000 small objects alone
// grow it 0.2-0.3 MB), which is 70 bytes a connection at 10,000. So a run
// in which the collector runs while the connections open pays it, and
// epoll's larger heap always does: echod with --metrics-addr, whose
// scrapes allocate, met a collection at 10,000 and gave 299-314 on
// io_uring while the receive held a slot, and meets none now (164-168);
// GOGC=50 and GOGC=25 force two and four, and give 184 and 156 bytes,
// against 259 and 221 with the slot (one run each, the two builds side
// by side).
//
// What is indexed by fd is each loop's own, and a Listener hands Conns
// to its loops in turn whatever their numbers, so such a table spans
// about every fd number on every loop: a byte there costs a byte per
// connection per loop. On io_uring nothing is left of those, and the cost
// grows little with the loops (what each loop keeps is the runtime's and
// the ring's): measured as make idle-rss does (2026-11-30), 169 bytes at
// 1 loop and 233 at 16 (gnet 588 at 16 in the same run), against 337-350
// at 1, 359-377 at 4 and 362-385 at 16 while a Conn's receive held a slot
// and its timer entry was on the heap, 447-457 and 574-595 at 1 and 16
// loops that morning, 773-811 at 16 before the first changes above, and
// gnet's 555-623 at 16 (343-353 at 16 once idle timeouts went to the
// sweep, 322-340 once the poller's tag record went into the slot).
// On epoll the poller keeps a record per fd: its list of the fd's tags,
// which routes an event to them, and the registration (whose counts of
// the tags asking for each event are 16 bits: ErrTooManyTags past
// 65,535), 24 bytes together. It is made on the loop that arms the fd and
// given back when the fd has neither tag nor registration left; what each
// loop keeps by fd number is a 4-byte index to it (poller's fdRecs). So
// each loop adds about 4 bytes per connection, where the record itself
// by fd number on each loop added about 28: measured as above, three runs
// each (2026-11-30), 353-371 at 1 loop and 432-437 at 16, against
// 345-363 and 776-779 with the record on every loop in the same session
// (926-931 with a 32-byte record, 1,014-1,022 that morning, 1,361-1,381
// before the changes above), and gnet's 555-623 at 16 (411-417 at 16 once
// idle timeouts went to the sweep; 432 with the 16-byte place, gnet 588).
//
// Issue 11 asks for 256 bytes: every run above meets it on io_uring, with
// a collection or without (about 144 bytes live per Conn: Conn 128, its
// place 16). On epoll a Conn's readiness poll still takes a slot and the
// poller's ledger keeps its tag (about 270 bytes live). A Conn of 112
// bytes would need what is left in it to move out (the drain bound, an
// IPv6 peer's address), which costs an allocation to every Conn that
// drains or every IPv6 one.
// An fd's list of requests cannot be left to
// the poller's record: the poller drops a tag when it decides its Event,
// and CloseFd must still complete, before close(2), a request whose Event
// is decided but not yet handled (TestCloseFdInCallbackBeatsDecidedEvents).
//
// # Listener strategy: accept on one loop, hand off round robin
//
// By default a Listener owns one listening socket, accepted on the loop
// fd % Loops; each accepted Conn goes to the next loop in turn through that
// loop's inbox. The alternative, one SO_REUSEPORT socket per loop each
// serving its own Conns (ListenConfig.ReusePort), is not the default:
// it does not apply to Unix sockets; the kernel spreads connections by a
// hash of the 4-tuple, so a few long-lived connections can all land on one
// loop; any process of the same user may join the port group and receive
// connections; and a group member's queued connections are reset when it
// closes, which breaks Shutdown's "finish what was accepted". Its benefit,
// accepting on every core at once, matters for connection rates far above
// what a hand-off costs (one inbox push, a wake only if the target sleeps).
// BenchmarkAccept (connect, one echo, close; 2 loops, 4 clients) measures
// both side by side: on a loaded 2-core machine SO_REUSEPORT took about 15%
// less time per connection in some runs and more in others, so the option
// is there for connection-rate-bound servers and the default keeps the
// semantics above.
//
// Accepting backs off on EMFILE, ENFILE, ENOBUFS and ENOMEM (5 ms doubling
// to 500 ms) instead of re-arming a socket that stays readable (libuv #690).
// A listening socket that can no longer accept (EINVAL: shut down through
// another descriptor of it; EFAULT) is closed after its first failed
// accept, with an error-level log line, where re-arming it would spin; one
// whose number was closed behind the reactor's back (EBADF, ENOTSOCK) is
// dropped the same way without a close(2), since the number may name
// another file by then. The Listener's Conns and Close are unaffected.
//
// # Platforms
//
// The reactor runs on Linux (epoll, or io_uring where the kernel and any
// seccomp profile allow it). The package builds on every GOOS, so that a
// service importing it builds on its developers' laptops, but elsewhere New
// returns an error wrapping ErrUnavailable that says the reactor is
// Linux-only. Nothing falls back silently: a service that must also run
// there uses net.Listen and net.Dialer itself when New fails, which
// NetListen and DialContext mirror by signature.
//
// # Blocking calls and callbacks
//
// Callbacks and Handler methods run on a loop and must not block. Close,
// Listener.Close and Listener.Shutdown wait for loops, so from a callback
// they return ErrOnLoop; use Listener.CloseAsync there. CloseFd is for fds
// armed through Arm and Poll; a Conn's fd belongs to the connection layer.
package reactor
