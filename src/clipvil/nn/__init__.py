"""Neural-network blocks shared by several families: layers, question encoders, decoding (greedy / beam / sample),
losses. Pure torch: no data, no I/O."""
