"""langfield.gaussians"""
