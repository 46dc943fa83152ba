"""Scan sources: each turns a device (camera, HID gun, serial scanner, stdin) into Scans."""
