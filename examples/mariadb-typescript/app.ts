// A MariaDB/MySQL connector in TypeScript: renders a `mysql://` URL for
// mysql2, the MariaDB connectors and most ORMs, from a host, a user and a
// sealed password. The password is percent-encoded by the host; this code
// never sees it.
import { Output, RenderError, Text, type Connector } from "keyward-connector";

const connector: Connector = {
  info: () => ({
    name: "mariadb",
    version: "0.1.0",
    description: "A mysql:// URL for MariaDB or MySQL",
    fields: [
      { name: "host", description: "Server host name or address", required: true, destination: "host" },
      { name: "port", description: "TCP port", default: "3306", destination: "port" },
      { name: "user", description: "Database user", required: true },
      { name: "password", description: "The user's password", required: true, sensitive: true },
      { name: "database", description: "Database name", required: true, destination: "resource" },
    ],
  }),

  render(fields) {
    const port = fields.integer("port", "port number") ?? 3306;
    if (port < 1 || port > 65535) throw new RenderError("must be between 1 and 65535", "port");
    const database = fields.require("database");
    if (database.asPlain() === "") throw new RenderError("must not be empty", "database");
    const url = Text.concat(
      "mysql://",
      fields.require("user").percent(),
      ":",
      fields.require("password").percent(),
      "@",
      fields.require("host").uriHost(),
      `:${port}/`,
      database.percent(),
    );
    return [Output.destination("url", url)];
  },
};

export default connector;
