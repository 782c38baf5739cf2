print("toby: not yet implemented")
