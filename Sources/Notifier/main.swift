runNotifier()
