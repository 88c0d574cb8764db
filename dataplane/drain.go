package dataplane

// CloseConnections makes every response from now on close its connection
// (Connection: close). A process handing its listeners over to another
// calls it a moment before it stops: keep-alive clients then leave after
// a response, cleanly, and their next request opens a connection the new
// process accepts, instead of racing the close of an idle connection when
// the stop comes.
func (d *Dataplane) CloseConnections() { d.closing.Store(true) }
