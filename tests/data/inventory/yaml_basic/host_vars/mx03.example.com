limits: {max_size: 1}
