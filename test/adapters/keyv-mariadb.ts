/** The MariaDB the Keyv-store tests run on (DESIGN.md section 6 lists the shared services). */
export const MARIADB_URL = process.env.CREDVAULT_TEST_MARIADB_URL ?? 'mysql://root@127.0.0.1:3306/test';
