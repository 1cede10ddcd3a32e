/*
 * govlake's Trino-callable verification (核验): one table function per check,
 *
 *   SELECT * FROM TABLE(verify.system.entity_good_standing(
 *       subject => '91441900MA4W1234X3', purpose => '企业变更登记免提交证明'))
 *
 * answering yes or no, never the record. The function holds no data and no
 * rules: at analysis it posts the question (the Trino user, the check, the
 * subject, the parameters, the purpose, the query id) to the project's service
 * on 127.0.0.1 (pipelines/serving/verifier.py), which answers it from the base
 * libraries with the same code as `govlake verify`, logs it in
 * governance.verification_log, and refuses what the command line refuses. A
 * refusal fails the query with the service's reason. Arguments of a table
 * function are constants, so one call asks one question: a department cannot
 * join a list of ID numbers into it.
 *
 * Built by the project (pipelines/serving/trino_plugins.py) with javac against
 * the Trino server's own SPI jars; there are no other dependencies (the JDK's
 * HTTP client, a form-encoded request, a three-line text answer).
 */
package org.govlake.trino.verify;

import com.fasterxml.jackson.annotation.JsonCreator;
import com.fasterxml.jackson.annotation.JsonProperty;
import io.airlift.slice.Slice;
import io.trino.spi.Page;
import io.trino.spi.Plugin;
import io.trino.spi.TrinoException;
import io.trino.spi.block.BlockBuilder;
import io.trino.spi.connector.Connector;
import io.trino.spi.connector.ConnectorAccessControl;
import io.trino.spi.connector.ConnectorContext;
import io.trino.spi.connector.ConnectorFactory;
import io.trino.spi.connector.ConnectorMetadata;
import io.trino.spi.connector.ConnectorSession;
import io.trino.spi.connector.ConnectorSplit;
import io.trino.spi.connector.ConnectorSplitManager;
import io.trino.spi.connector.ConnectorSplitSource;
import io.trino.spi.connector.ConnectorTransactionHandle;
import io.trino.spi.connector.FixedSplitSource;
import io.trino.spi.function.FunctionProvider;
import io.trino.spi.function.table.AbstractConnectorTableFunction;
import io.trino.spi.function.table.Argument;
import io.trino.spi.function.table.ArgumentSpecification;
import io.trino.spi.function.table.ConnectorTableFunction;
import io.trino.spi.function.table.ConnectorTableFunctionHandle;
import io.trino.spi.function.table.Descriptor;
import io.trino.spi.function.table.ReturnTypeSpecification;
import io.trino.spi.function.table.ScalarArgument;
import io.trino.spi.function.table.ScalarArgumentSpecification;
import io.trino.spi.function.table.TableFunctionAnalysis;
import io.trino.spi.function.table.TableFunctionProcessorProvider;
import io.trino.spi.function.table.TableFunctionProcessorState;
import io.trino.spi.function.table.TableFunctionSplitProcessor;
import io.trino.spi.transaction.IsolationLevel;

import java.io.IOException;
import java.net.URI;
import java.net.URLEncoder;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import java.util.Set;
import java.util.stream.Collectors;

import static io.trino.spi.StandardErrorCode.GENERIC_INTERNAL_ERROR;
import static io.trino.spi.StandardErrorCode.PERMISSION_DENIED;
import static io.trino.spi.type.VarcharType.VARCHAR;

public final class VerifyPlugin
        implements Plugin
{
    static final String SCHEMA = "system";
    static final String TOKEN_HEADER = "X-Govlake-Audit-Token";
    /** check name -> its parameters besides the subject (pipelines/applications/verification.py CHECKS). */
    static final Map<String, List<String>> CHECKS = new LinkedHashMap<>();

    static {
        CHECKS.put("person_alive_in_town", List.of("town"));
        CHECKS.put("holds_valid_licence", List.of("licence_type"));
        CHECKS.put("entity_good_standing", List.of());
    }

    @Override
    public Iterable<ConnectorFactory> getConnectorFactories()
    {
        return List.of(new VerifyConnectorFactory());
    }

    public static final class VerifyConnectorFactory
            implements ConnectorFactory
    {
        @Override
        public String getName()
        {
            return "govlake_verify";
        }

        @Override
        public Connector create(String catalogName, Map<String, String> config, ConnectorContext context)
        {
            String endpoint = config.get("govlake.verify.endpoint");
            String tokenFile = config.get("govlake.verify.token-file");
            if (endpoint == null || tokenFile == null) {
                throw new IllegalArgumentException("catalog " + catalogName
                        + ": govlake.verify.endpoint and govlake.verify.token-file are required");
            }
            return new VerifyConnector(new Verifier(URI.create(endpoint), Path.of(tokenFile)));
        }
    }

    /** Posts one question to the project's service and returns its answer, or fails with the refusal. */
    static final class Verifier
    {
        private final URI endpoint;
        private final Path tokenFile;
        // HTTP/1.1 without the h2c upgrade: the receiver is a plain HTTP/1.0 server on loopback
        private final HttpClient client = HttpClient.newBuilder()
                .version(HttpClient.Version.HTTP_1_1)
                .connectTimeout(Duration.ofSeconds(5))
                .build();

        Verifier(URI endpoint, Path tokenFile)
        {
            this.endpoint = endpoint;
            this.tokenFile = tokenFile;
        }

        VerifyHandle ask(ConnectorSession session, String check, Map<String, String> form)
        {
            Map<String, String> fields = new LinkedHashMap<>(form);
            fields.put("user", session.getUser());
            fields.put("check", check.replace('_', '-'));
            fields.put("query_id", session.getQueryId());
            String body = fields.entrySet().stream()
                    .filter(entry -> entry.getValue() != null)
                    .map(entry -> URLEncoder.encode(entry.getKey(), StandardCharsets.UTF_8) + "="
                            + URLEncoder.encode(entry.getValue(), StandardCharsets.UTF_8))
                    .collect(Collectors.joining("&"));
            HttpResponse<String> response;
            try {
                String token = Files.readString(tokenFile, StandardCharsets.US_ASCII).strip();
                HttpRequest request = HttpRequest.newBuilder(endpoint)
                        .timeout(Duration.ofSeconds(60))
                        .header("Content-Type", "application/x-www-form-urlencoded; charset=utf-8")
                        .header(TOKEN_HEADER, token)
                        .POST(HttpRequest.BodyPublishers.ofString(body, StandardCharsets.UTF_8))
                        .build();
                response = sendWithOneRetry(request);
            }
            catch (IOException e) {
                throw new TrinoException(GENERIC_INTERNAL_ERROR, "govlake verification service unreachable: " + e.getMessage(), e);
            }
            catch (InterruptedException e) {
                Thread.currentThread().interrupt();
                throw new TrinoException(GENERIC_INTERNAL_ERROR, "interrupted while asking the verification service", e);
            }
            String text = response.body();
            if (response.statusCode() == 403) {
                throw new TrinoException(PERMISSION_DENIED, "verification refused: " + text.strip());
            }
            if (response.statusCode() != 200) {
                throw new TrinoException(GENERIC_INTERNAL_ERROR, "verification service answered " + response.statusCode()
                        + ": " + text.strip());
            }
            String[] lines = text.split("\n", -1);
            if (lines.length < 3) {
                throw new TrinoException(GENERIC_INTERNAL_ERROR, "verification service: malformed answer");
            }
            return new VerifyHandle(check.replace('_', '-'), lines[0], lines[1], lines[2]);
        }

        /**
         * Sends once more when the connection closed before any answer byte came back
         * (a CI run saw "header parser received no bytes" for a question the receiver
         * never logged). A timeout is not retried: the service may still be answering.
         */
        private HttpResponse<String> sendWithOneRetry(HttpRequest request)
                throws IOException, InterruptedException
        {
            try {
                return client.send(request, HttpResponse.BodyHandlers.ofString(StandardCharsets.UTF_8));
            }
            catch (java.net.http.HttpTimeoutException e) {
                throw e;
            }
            catch (IOException e) {
                Thread.sleep(200);
                return client.send(request, HttpResponse.BodyHandlers.ofString(StandardCharsets.UTF_8));
            }
        }
    }

    enum VerifyTransactionHandle
            implements ConnectorTransactionHandle
    {
        INSTANCE
    }

    static final class VerifyConnector
            implements Connector
    {
        private final Verifier verifier;

        VerifyConnector(Verifier verifier)
        {
            this.verifier = verifier;
        }

        @Override
        public ConnectorTransactionHandle beginTransaction(IsolationLevel isolationLevel, boolean readOnly, boolean autoCommit)
        {
            return VerifyTransactionHandle.INSTANCE;
        }

        @Override
        public ConnectorMetadata getMetadata(ConnectorSession session, ConnectorTransactionHandle transaction)
        {
            return new ConnectorMetadata() {};   // no schemas, no tables: only the functions
        }

        @Override
        public Set<ConnectorTableFunction> getTableFunctions()
        {
            return CHECKS.entrySet().stream()
                    .map(entry -> new CheckFunction(entry.getKey(), entry.getValue(), verifier))
                    .collect(Collectors.toUnmodifiableSet());
        }

        @Override
        public ConnectorSplitManager getSplitManager()
        {
            return new ConnectorSplitManager()
            {
                @Override
                public ConnectorSplitSource getSplits(ConnectorTransactionHandle transaction, ConnectorSession session,
                        ConnectorTableFunctionHandle function)
                {
                    return new FixedSplitSource(new VerifySplit(1));
                }
            };
        }

        @Override
        public Optional<FunctionProvider> getFunctionProvider()
        {
            return Optional.of(new FunctionProvider()
            {
                @Override
                public TableFunctionProcessorProvider getTableFunctionProcessorProvider(ConnectorTableFunctionHandle handle)
                {
                    return new TableFunctionProcessorProvider()
                    {
                        @Override
                        public TableFunctionSplitProcessor getSplitProcessor(ConnectorSession session,
                                ConnectorTableFunctionHandle functionHandle, ConnectorSplit split)
                        {
                            return new AnswerProcessor((VerifyHandle) functionHandle);
                        }
                    };
                }
            });
        }
    }

    static final class CheckFunction
            extends AbstractConnectorTableFunction
    {
        static final List<String> COLUMNS = List.of("check_name", "answer", "question", "asked_at");
        private final List<String> parameters;
        private final Verifier verifier;

        CheckFunction(String name, List<String> parameters, Verifier verifier)
        {
            super(SCHEMA, name, arguments(parameters),
                    new ReturnTypeSpecification.DescribedTable(Descriptor.descriptor(COLUMNS,
                            COLUMNS.stream().map(c -> (io.trino.spi.type.Type) VARCHAR).toList())));
            this.parameters = parameters;
            this.verifier = verifier;
        }

        private static List<ArgumentSpecification> arguments(List<String> parameters)
        {
            // every argument is optional to Trino, so a question without its purpose or
            // parameter reaches the service and is refused and logged there, not by Trino
            List<ArgumentSpecification> arguments = new ArrayList<>();
            for (String name : concat(List.of("subject"), parameters, List.of("purpose"))) {
                arguments.add(ScalarArgumentSpecification.builder().name(name.toUpperCase(java.util.Locale.ROOT))
                        .type(VARCHAR).defaultValue(null).build());
            }
            return arguments;
        }

        private static List<String> concat(List<String> a, List<String> b, List<String> c)
        {
            List<String> all = new ArrayList<>(a);
            all.addAll(b);
            all.addAll(c);
            return all;
        }

        @Override
        public TableFunctionAnalysis analyze(ConnectorSession session, ConnectorTransactionHandle transaction,
                Map<String, Argument> arguments, ConnectorAccessControl accessControl)
        {
            Map<String, String> form = new LinkedHashMap<>();
            for (String name : concat(List.of("subject"), parameters, List.of("purpose"))) {
                Object value = ((ScalarArgument) arguments.get(name.toUpperCase(java.util.Locale.ROOT))).getValue();
                form.put(name, value == null ? null : ((Slice) value).toStringUtf8());
            }
            return TableFunctionAnalysis.builder().handle(verifier.ask(session, getName(), form)).build();
        }
    }

    /** What the service answered: the only thing the function returns. */
    public static final class VerifyHandle
            implements ConnectorTableFunctionHandle
    {
        private final String checkName;
        private final String answer;
        private final String question;
        private final String askedAt;

        @JsonCreator
        public VerifyHandle(@JsonProperty("checkName") String checkName, @JsonProperty("answer") String answer,
                @JsonProperty("question") String question, @JsonProperty("askedAt") String askedAt)
        {
            this.checkName = checkName;
            this.answer = answer;
            this.question = question;
            this.askedAt = askedAt;
        }

        @JsonProperty
        public String getCheckName()
        {
            return checkName;
        }

        @JsonProperty
        public String getAnswer()
        {
            return answer;
        }

        @JsonProperty
        public String getQuestion()
        {
            return question;
        }

        @JsonProperty
        public String getAskedAt()
        {
            return askedAt;
        }
    }

    public static final class VerifySplit
            implements ConnectorSplit
    {
        private final int part;

        @JsonCreator
        public VerifySplit(@JsonProperty("part") int part)
        {
            this.part = part;
        }

        @JsonProperty
        public int getPart()
        {
            return part;
        }
    }

    static final class AnswerProcessor
            implements TableFunctionSplitProcessor
    {
        private final VerifyHandle handle;
        private boolean done;

        AnswerProcessor(VerifyHandle handle)
        {
            this.handle = handle;
        }

        @Override
        public TableFunctionProcessorState process()
        {
            if (done) {
                return TableFunctionProcessorState.Finished.FINISHED;
            }
            done = true;
            List<String> values = List.of(handle.getCheckName(), handle.getAnswer(), handle.getQuestion(), handle.getAskedAt());
            io.trino.spi.block.Block[] blocks = new io.trino.spi.block.Block[values.size()];
            for (int i = 0; i < values.size(); i++) {
                BlockBuilder builder = VARCHAR.createBlockBuilder(null, 1);
                VARCHAR.writeString(builder, values.get(i));
                blocks[i] = builder.build();
            }
            return TableFunctionProcessorState.Processed.produced(new Page(1, blocks));
        }
    }
}
