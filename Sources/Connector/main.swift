runConnector()
