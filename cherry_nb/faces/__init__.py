"""What people touch: reports (`report`), the threshold explorer (`explorer`), the command line (`cli`,
`line_commands`, `sweep`).

Written by hand (nbdev exports the modules, not this file); it imports nothing, so importing one module of the
part does not import the others."""
