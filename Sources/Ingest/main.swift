runIngest()
