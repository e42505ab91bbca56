"""gradserve server: gRPC front process, worker pool and CLI."""
