package main

// STUB: replaced by the owner of the send command.
func newSendCommand() *command { panic("unimplemented") }
