"""Reply engines: implementations of the `ReplyEngine` port."""
