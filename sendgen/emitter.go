package sendgen

// emitter receives the commands of a stream in order, starting with SUBVOL
// or SNAPSHOT and ending with END (the stream header is not a command and is
// written by the encoder). c is only valid during the call: an emitter that
// keeps anything copies it.
type emitter interface {
	emit(c *Command) error
}
